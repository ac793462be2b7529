"""Built-in demo data set: procedural wallpaper photos with one kind of defect per class.

Why it exists: the quick start, the tests and the benchmarks need a data set that ships with the
code, runs offline and takes seconds to make. It imitates the wallpaper-defect task that
motivated the project: every class shares the same pool of wallpaper backgrounds (so the
background never gives the class away), each defect class draws its defect at a random position,
size, orientation and strength, and the classes are imbalanced like real defect data.

Every image has its own random generator, seeded by (seed, class index, image index). The same
seed therefore gives byte-identical files, and a scaled-down set is a prefix of the full one.
("Identical" holds for one platform and set of library versions: another libjpeg or another
numpy's cos/exp may differ in the last bit, which can flip a rare pixel by one level.)
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib

from PIL import Image

from clipcls.data.demo_draw import render_image
from clipcls.errors import ClipclsError
from clipcls.io import atomic_write_bytes


class DemoDataError(ClipclsError, ValueError):
    """A bad option for the demo set, naming it."""


# Class name -> number of images at scale 1. Largest:smallest is 250:50 (5:1), 860 in all.
DEMO_CLASSES: dict[str, int] = {
    "clean": 250,
    "mould": 110,
    "tear": 95,
    "seam_gap": 50,
    "stain": 150,
    "bubble": 85,
    "scratch": 120,
}

JPEG_QUALITY = 90  # high enough that JPEG artefacts do not hide the thin defects
GENERATOR_VERSION = 1  # bump whenever drawing changes, so cached demo sets are redrawn
MARKER_NAME = ".complete"  # written last; its absence means an unfinished generation

# ---------------------------------------------------------------------------------------------
# The data set on disk
# ---------------------------------------------------------------------------------------------


def scaled_counts(scale: float = 1.0) -> dict[str, int]:
    """Images per class at `scale`: each DEMO_CLASSES count times scale, at least 2."""
    if not scale > 0:
        raise DemoDataError(f"--scale must be positive, got {scale}")
    return {name: max(2, math.floor(n * scale + 0.5)) for name, n in DEMO_CLASSES.items()}


def _file_names(class_name: str, count: int) -> set[str]:
    """The file names a class folder holds when complete."""
    return {f"{class_name}_{i}.jpg" for i in range(count)}


def _marker_record(seed: int, scale: float, counts: dict[str, int]) -> dict[str, object]:
    """What the marker stores; everything but `scale` decides whether the files are current."""
    return {"version": GENERATOR_VERSION, "seed": seed, "counts": counts, "scale": scale}


def _is_complete(root: pathlib.Path, seed: int, counts: dict[str, int]) -> bool:
    """True when a finished generation with these settings is on disk (files listed, not read)."""
    try:
        record = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    if [record.get(k) for k in ("version", "seed", "counts")] != [GENERATOR_VERSION, seed, counts]:
        return False
    for name, count in counts.items():
        folder = root / name
        if not folder.is_dir():
            return False
        if {p.name for p in folder.glob("*.jpg")} != _file_names(name, count):
            return False
    return True


def jpeg_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Encode as JPEG without metadata, so identical pixels give identical bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_class(root: pathlib.Path, class_name: str, count: int, seed: int) -> None:
    """Write one class folder, removing images left over from another scale or a crash."""
    folder = root / class_name
    folder.mkdir(parents=True, exist_ok=True)
    expected = _file_names(class_name, count)
    for stale in [*folder.glob(f"{class_name}_*.jpg"), *folder.glob("*.tmp")]:
        if stale.name not in expected:
            stale.unlink()
    for i in range(count):
        image = render_image(class_name, list(DEMO_CLASSES).index(class_name), seed, i)
        atomic_write_bytes(jpeg_bytes(image), folder / f"{class_name}_{i}.jpg", fsync=False)


def make_demo_dataset(root: str | os.PathLike, seed: int = 0, scale: float = 1.0) -> pathlib.Path:
    """Write the demo set as `root/<class>/<class>_<i>.jpg` and return `root`.

    Does nothing when `root` already holds a finished set with the same seed and counts. The
    marker file is removed first and written last, so an interrupted run is redone next time.
    """
    if seed < 0:
        raise DemoDataError(f"--seed must be non-negative, got {seed}")
    root = pathlib.Path(root)
    counts = scaled_counts(scale)
    if _is_complete(root, seed, counts):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).unlink(missing_ok=True)
    for name, count in counts.items():
        _write_class(root, name, count, seed)
    record = _marker_record(seed, scale, counts)
    atomic_write_bytes(json.dumps(record, indent=1).encode(), root / MARKER_NAME)
    return root
