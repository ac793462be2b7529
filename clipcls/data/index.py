"""Index a class-folder tree: class names, image paths and labels, compactly stored.

Paths live in one bytes buffer plus an offsets array rather than a Python list of strings, so
DataLoader workers share them copy-on-write instead of each touching (and so copying) millions
of reference-counted objects.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipcls.data.images import IMAGE_EXTENSIONS
from clipcls.data.walk import is_directory, is_hidden, walk_files
from clipcls.errors import ClipclsError

log = logging.getLogger(__name__)


class DatasetError(ClipclsError, ValueError):
    """A problem with the user's image folders, naming the folder or classes at fault."""


class PathTable:
    """An immutable sequence of paths stored as UTF-8 bytes in one array."""

    def __init__(self, paths: list[str]) -> None:
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._data[start:end].tobytes().decode("utf-8", "surrogateescape")

    def take(self, indices: np.ndarray) -> PathTable:
        """A new table holding the paths at `indices`, gathered in numpy (no Python strings), a
        few thousand paths at a time so the index arrays stay small next to the bytes."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self._offsets[indices]
        lengths = self._offsets[indices + 1] - starts
        table = PathTable([])
        table._offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=table._offsets[1:])
        table._data = np.empty(table._offsets[-1], dtype=np.uint8)
        for lo in range(0, len(indices), _TAKE_CHUNK):
            hi = min(lo + _TAKE_CHUNK, len(indices))
            first, last = table._offsets[lo], table._offsets[hi]
            # byte k of the new buffer is old byte starts[j] + (k - new offset of path j), path j holding k
            shift = np.repeat(starts[lo:hi] - table._offsets[lo:hi], lengths[lo:hi])
            table._data[first:last] = self._data[shift + np.arange(first, last)]
        return table


_TAKE_CHUNK = 4096


@dataclass
class ImageIndex:
    """Images of a class-folder tree: `paths[i]` has label `labels[i]` into `class_names`."""

    root: Path
    class_names: list[str]
    paths: PathTable
    labels: np.ndarray

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names)}

    def counts(self) -> np.ndarray:
        """Images per class, in class order."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def subset(self, indices: np.ndarray) -> ImageIndex:
        """The images at `indices`, with the same classes."""
        return ImageIndex(self.root, self.class_names, self.paths.take(indices), self.labels[indices])


def _walk_images(folder: str) -> list[str]:
    """Image files under `folder` (recursively, each real file once, hidden entries and links
    that cannot be followed skipped), sorted."""
    files = walk_files(folder, on_error=lambda path, reason: log.warning("skipped %s: %s", path, reason))
    return sorted(p for p in files if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)


def list_classes(root: str | os.PathLike) -> list[str]:
    """Immediate, non-hidden sub-folders of `root`, sorted: the class names."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    with os.scandir(root) as entries:
        names = sorted(e.name for e in entries if not is_hidden(e.name) and is_directory(e))
    if not names:
        raise DatasetError(f"no class folders in {root}: expected {root}/<class>/<image files>")
    return names


def index_folder(root: str | os.PathLike, class_names: list[str] | None = None) -> ImageIndex:
    """Index `root/<class>/**/<image>`.

    With `class_names` (from a trained model) the labels follow that order, never the folder
    listing; folders the model does not know and classes the folder lacks are errors that name
    them. Without it, classes are the sorted sub-folders and an empty class is an error.
    """
    root = Path(root)
    found = list_classes(root)
    if class_names is not None:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise DatasetError(f"{root} has class folders the model does not know: {unknown}")
    names = list(class_names) if class_names is not None else found
    paths: list[str] = []
    labels: list[int] = []
    for idx, name in enumerate(names):
        files = _walk_images(str(root / name)) if name in found else []
        paths += files
        labels += [idx] * len(files)
    index = ImageIndex(root, names, PathTable(paths), np.asarray(labels, dtype=np.int64))
    empty = [n for n, c in zip(names, index.counts()) if c == 0]
    if empty and class_names is None:
        raise DatasetError(f"{root}: class folders with no images: {empty}")
    return index


def stratified_split(index: ImageIndex, test_size: float, seed: int) -> tuple[ImageIndex, ImageIndex]:
    """Seeded, stratified train/validation split of one index."""
    from sklearn.model_selection import train_test_split

    too_small = [n for n, c in zip(index.class_names, index.counts()) if c < 2]
    if too_small:
        raise DatasetError(
            f"{index.root}: classes with fewer than 2 images cannot be split for validation: "
            f"{too_small}; add images or give a separate val_dataset_dir"
        )
    n_val, classes = math.ceil(test_size * len(index.labels)), len(index.class_names)  # sklearn's rounding
    if not classes <= n_val <= len(index.labels) - classes:
        raise DatasetError(
            f"{index.root}: test_size {test_size} gives {n_val} validation and {len(index.labels) - n_val} "
            f"training images, but a stratified split needs at least one of each of the {classes} classes "
            "on both sides; change test_size or give a separate val_dataset_dir"
        )
    positions = np.arange(len(index.labels))
    train, val = train_test_split(positions, test_size=test_size, stratify=index.labels, random_state=seed)
    train, val = _every_class_on_both_sides(index.labels, train, val, seed)
    return index.subset(np.sort(train)), index.subset(np.sort(val))


def _every_class_on_both_sides(
    labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move one image of each class that a side lacks to it (seeded). sklearn's rounding can put
    both images of a 2-image class in training; that class would then score F1 0 in the macro F1
    that picks the best checkpoint, whatever the model does."""
    rng = np.random.default_rng(seed)
    sides = [train, val]
    for source, target in ((0, 1), (1, 0)):
        for c in np.setdiff1d(np.unique(labels), labels[sides[target]]):
            candidates = sides[source][labels[sides[source]] == c]
            moved = candidates[rng.integers(len(candidates))]
            sides[source] = sides[source][sides[source] != moved]
            sides[target] = np.append(sides[target], moved)
    return sides[0], sides[1]
