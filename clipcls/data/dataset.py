"""The image dataset and its batches: unreadable images are reported with their reason and
skipped, never fatal (a DataLoader worker never raises on a bad file).

Training, evaluation and prediction share this one policy: a batch carries the readable images
and, for the others, their position and why they could not be read; each caller decides what to
do with those (log them, list them in metrics.json, write them to the errors CSV).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from clipcls.data.images import ImageLoadError, load_image
from clipcls.data.index import PathTable

UNLABELLED = -1  # the label of an image to predict


class Sample(NamedTuple):
    """One image: its pixels, label and position in the dataset, or the reason it is unreadable."""

    pixels: torch.Tensor | None
    label: int
    position: int
    failure: str | None


class Batch(NamedTuple):
    """Readable images stacked (None when none was readable) and the unreadable ones' reasons."""

    pixels: torch.Tensor | None
    labels: torch.Tensor | None
    positions: torch.Tensor | None
    failures: list[tuple[int, str]]  # (position, reason)


class ImageDataset(Dataset):
    """The images of a path table (with labels, or unlabelled for prediction), transformed."""

    def __init__(
        self,
        paths: PathTable,
        labels: np.ndarray | None,
        transform: Callable,
        draft_size: tuple[int, int] | None = None,
    ) -> None:
        self.paths = paths
        self.labels = labels
        self.transform = transform
        self.draft_size = draft_size  # decode JPEGs at reduced size when much larger than the input

    @classmethod
    def from_index(cls, index, transform: Callable, draft_size: tuple[int, int] | None = None) -> ImageDataset:
        """The dataset of a labelled `clipcls.data.index.ImageIndex`."""
        return cls(index.paths, index.labels, transform, draft_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """Image `key`, or (index, draw seed) from a training sampler: then the random transform
        draws from that seed, so the sample's augmentation does not depend on which loader
        worker makes it or on what was drawn before (a resumed run repeats it exactly)."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        label = UNLABELLED if self.labels is None else int(self.labels[i])
        try:
            return Sample(self._pixels(i, seed), label, i, None)
        except ImageLoadError as err:
            return Sample(None, label, i, err.reason)
        except Exception as err:  # noqa: BLE001 - a transform failure must not kill the worker
            return Sample(None, label, i, f"{type(err).__name__}: {err}")

    def _pixels(self, i: int, seed: int | None) -> torch.Tensor:
        image = load_image(self.paths[i], draft_size=self.draft_size)
        if seed is None:
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
            torch.manual_seed(seed)
            return self.transform(image)


def collate_samples(samples: list[Sample]) -> Batch:
    """Stack the readable samples; keep (position, reason) of the others."""
    good = [s for s in samples if s.failure is None]
    failures = [(s.position, s.failure) for s in samples if s.failure is not None]
    if not good:
        return Batch(None, None, None, failures)
    return Batch(
        torch.stack([s.pixels for s in good]),
        torch.tensor([s.label for s in good]),
        torch.tensor([s.position for s in good]),
        failures,
    )
