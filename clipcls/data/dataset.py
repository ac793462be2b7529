"""Datasets, samplers and collation: unreadable images are reported and skipped, never fatal."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler, default_collate

from clipcls.data.images import ImageLoadError, load_image
from clipcls.data.index import ImageIndex

log = logging.getLogger("clipcls.data")


class ImageDataset(Dataset):
    """(image tensor, label, position) for every image of an index; None for unreadable ones."""

    def __init__(self, index: ImageIndex, transform: Callable, draft_size: tuple[int, int] | None = None) -> None:
        self.index = index
        self.transform = transform
        self.draft_size = draft_size  # decode JPEGs at reduced size when much larger than the input

    def __len__(self) -> int:
        return len(self.index.labels)

    def __getitem__(self, i: int):
        path = self.index.paths[i]
        try:
            image = load_image(path, draft_size=self.draft_size)
        except ImageLoadError as err:
            log.warning("skipping unreadable image: %s", err)
            return None
        return self.transform(image), int(self.index.labels[i]), i


def collate_skipping_bad(batch: list):
    """Default collation of the readable samples; an all-bad batch becomes None."""
    batch = [sample for sample in batch if sample is not None]
    return default_collate(batch) if batch else None


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
