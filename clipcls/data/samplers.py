"""Training samplers: shuffling, class-balanced and the seed's one-image-per-class groups.

Every sampler's order depends only on (seed, epoch), so a resumed run sees the same order as an
uninterrupted one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler


class EpochSeededRandomSampler(RandomSampler):
    """Shuffling whose order depends only on (seed, epoch), as DistributedSampler's does.

    Lightning calls `set_epoch` before every epoch, so a resumed run sees the same order as an
    uninterrupted one; a plain shuffle draws from the global RNG, which a resume does not restore.
    After a mid-epoch resume, `skip` leaves out the samples the checkpoint had already trained on.
    """

    def __init__(self, data_source, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.skip: dict[int, int] = {}  # epoch -> samples of its order already trained on
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip.pop(self.epoch, 0), None)


class PerClassSampler(Sampler[int]):
    """The seed's sampler: each group of C indices holds one random image of every class.

    Use with batch_size = C. An epoch has as many groups as fit the dataset's size.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, seed: int = 0) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
        self.groups = max(1, len(labels) // num_classes)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.groups * len(self.by_class)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        for _ in range(self.groups):
            for members in rng.permutation(len(self.by_class)):
                yield int(rng.choice(self.by_class[members]))


def build_sampler(kind: str, labels: np.ndarray, num_classes: int, seed: int) -> Sampler | None:
    """None (plain shuffling), class-balanced weighted sampling, or the per-class sampler."""
    if kind == "random":
        return None
    if kind == "balanced":
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        generator = torch.Generator().manual_seed(seed)
        return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
    if kind == "per_class":
        return PerClassSampler(labels, num_classes, seed)
    raise ValueError(f"unknown sampler {kind!r}: expected random, balanced or per_class")
