"""Training samplers: shuffling, class-balanced and the seed's one-image-per-class groups.

Every sampler's order depends only on (seed, epoch), is split between the processes of a DDP run
by the sampler itself, and can leave out the samples a checkpoint had already trained on. So a run
killed mid-epoch and resumed sees the same samples as one never interrupted, on one process or
several. Each index comes with a draw seed from (seed, epoch, position in the epoch's order): the
dataset seeds the sample's augmentation with it, wherever (whichever loader worker) it is drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator for the epoch's order, seeded through `SeedSequence((seed, epoch))`: with
    `seed + epoch`, seed s at epoch e replayed seed s+1 at epoch e-1. (Spawn key 1: the draw
    seeds come from the same sequence's own stream.)"""
    sequence = np.random.SeedSequence((seed, epoch), spawn_key=(1,))
    return torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> 1))


class Draw(NamedTuple):
    """A dataset index and the seed of its random transform."""

    index: int
    seed: int


class EpochSampler(Sampler[Draw]):
    """An epoch's order as a function of (seed, epoch), this process's share of it, minus a skip.

    Lightning calls `set_epoch` before every epoch. `skip` ({epoch: samples}) is set after a
    mid-epoch resume; it applies to this process's share and only once. Subclasses define the
    whole epoch's order (`order`) and the unit that goes to one process (`unit`).
    """

    unit = 1  # indices kept together when the order is split between processes

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.epoch = 0
        self.skip: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> np.ndarray:
        """The whole epoch's indices, for all processes."""
        raise NotImplementedError

    def _units(self) -> int:
        """Units per process: the epoch's units padded to a multiple of the process count, as
        DistributedSampler does, so that every process takes the same number of steps."""
        return -(-self.length // self.unit // self.world_size)

    def __len__(self) -> int:
        return self._units() * self.unit

    def shard(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's (indices, draw seeds) of the epoch, before any skip."""
        order = self.order(epoch)
        seeds = np.random.SeedSequence((self.seed, epoch)).generate_state(len(order), dtype=np.uint64) >> 1
        units = order.reshape(-1, self.unit)
        total = self._units() * self.world_size
        take = np.arange(total) % len(units)  # wrap around to pad, like DistributedSampler
        mine = take[self.rank :: self.world_size]
        positions = (mine[:, None] * self.unit + np.arange(self.unit)).ravel()
        return order[positions], seeds[positions]

    def __iter__(self) -> Iterator[Draw]:
        indices, seeds = self.shard(self.epoch)
        start = self.skip.pop(self.epoch, 0)
        return (Draw(int(i), int(s)) for i, s in zip(indices[start:], seeds[start:]))


class RandomOrderSampler(EpochSampler):
    """Every image once per epoch, shuffled."""

    def order(self, epoch: int) -> np.ndarray:
        return torch.randperm(self.length, generator=epoch_generator(self.seed, epoch)).numpy()


class BalancedSampler(EpochSampler):
    """As many draws as images, each class equally likely (with replacement)."""

    def __init__(self, labels: np.ndarray, num_classes: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(len(labels), seed, rank, world_size)
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)

    def order(self, epoch: int) -> np.ndarray:
        generator = epoch_generator(self.seed, epoch)
        return torch.multinomial(self.weights, self.length, replacement=True, generator=generator).numpy()


class PerClassSampler(EpochSampler):
    """The seed's sampler: each group of C indices holds one random image of every class.

    Use with batch_size = C. An epoch has as many groups as fit the dataset's size; under DDP
    whole groups go to each process, so every process's batch holds one image of every class.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
        groups = max(1, len(labels) // num_classes)
        super().__init__(groups * num_classes, seed, rank, world_size)
        self.unit = num_classes

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, epoch))
        groups = self.length // self.unit
        return np.array(
            [rng.choice(self.by_class[c]) for _ in range(groups) for c in rng.permutation(len(self.by_class))],
            dtype=np.int64,
        )


def build_sampler(
    kind: str, labels: np.ndarray, num_classes: int, seed: int, rank: int = 0, world_size: int = 1
) -> EpochSampler:
    """The training sampler: shuffled, class-balanced or per-class groups; this process's share."""
    if kind == "random":
        return RandomOrderSampler(len(labels), seed, rank, world_size)
    if kind == "balanced":
        return BalancedSampler(labels, num_classes, seed, rank, world_size)
    if kind == "per_class":
        return PerClassSampler(labels, num_classes, seed, rank, world_size)
    raise ValueError(f"unknown sampler {kind!r}: expected random, balanced or per_class")


class ShardSampler(Sampler[int]):
    """Evaluation order for one of several processes: every `world_size`-th index from `rank`,
    with no padding, so that metrics gathered over the processes count each image once."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, length, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
