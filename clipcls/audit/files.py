"""File and class checks: one streaming pass over every image file, keeping a few numbers each.

Each file is read once: its bytes give the exact-duplicate hash (SHA-256), the header its stored
size, and a small decode (JPEG draft mode) the perceptual hash and the contrast. Decoding goes
through the same `load_image` as training, so what is unreadable here is what training would
skip. Memory per image is a few dozen bytes in numpy arrays, whatever the image size.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clipcls.data.images import ImageLoadError, load_image

TINY_PX = 32  # shorter side below this: too little detail for any CLIP input size
EXTREME_ASPECT = 5.0  # longer / shorter side above this: squashing to a square destroys the picture
CONSTANT_STD = 2.0  # grey-level standard deviation (0-255) below this: a blank or near-blank frame
HASH_DECODE_PX = 64  # the perceptual hash needs only a 32x32 picture; decode JPEGs at >= 64 px
MIN_PER_CLASS = 5  # fewer images than this: no stratified k-fold or useful validation split
IMBALANCE_RATIO = 10.0  # largest / smallest class above this: report as imbalanced


@dataclass
class FileTable:
    """What the file pass keeps per image (arrays aligned with the audited image list)."""

    sha256: np.ndarray  # (N, 32) uint8; zeros where unreadable
    phash: np.ndarray  # (N,) uint64 perceptual hash; 0 where unreadable
    width: np.ndarray  # (N,) int32 stored size (before EXIF rotation); 0 where unknown
    height: np.ndarray
    grey_std: np.ndarray  # (N,) float32 contrast of the small decode; nan where unreadable
    readable: np.ndarray  # (N,) bool
    errors: dict[int, str]  # position -> why it could not be read

    @classmethod
    def empty(cls, n: int) -> FileTable:
        return cls(
            np.zeros((n, 32), np.uint8),
            np.zeros(n, np.uint64),
            np.zeros(n, np.int32),
            np.zeros(n, np.int32),
            np.full(n, np.nan, np.float32),
            np.zeros(n, bool),
            {},
        )


def phash_bits(image: Image.Image) -> int:
    """imagehash's DCT perceptual hash (64 bits) as an integer: robust to resizing and JPEG
    re-encoding, so it finds near copies cheaply before any embedding is compared."""
    import imagehash

    bits = imagehash.phash(image).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def inspect_file(path: str) -> dict[str, Any]:
    """SHA-256, stored size, perceptual hash and grey-level spread of one file, or its error."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as err:
        return {"error": f"{type(err).__name__}: {err.strerror or err}"}
    digest = hashlib.sha256(data).digest()
    try:  # the decoder's gate (format allowlist, truncation, bombs) first; then the stored size
        image = load_image(io.BytesIO(data), draft_size=(HASH_DECODE_PX, HASH_DECODE_PX))
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except ImageLoadError as err:
        return {"error": err.reason, "sha256": digest}
    except Exception as err:  # noqa: BLE001 - Pillow's header parsers raise many types
        return {"error": f"{type(err).__name__}: {err}", "sha256": digest}
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return {
        "sha256": digest,
        "width": width,
        "height": height,
        "phash": phash_bits(image),
        "grey_std": float(grey.std()),
    }


def scan_files(paths, progress: Any = None) -> FileTable:
    """Inspect every path of a PathTable (or list); `progress` is called with each count done."""
    table = FileTable.empty(len(paths))
    for i in range(len(paths)):
        found = inspect_file(paths[i])
        if "sha256" in found:
            table.sha256[i] = np.frombuffer(found["sha256"], np.uint8)
        if "error" in found:
            table.errors[i] = found["error"]
        else:
            table.phash[i] = found["phash"]
            table.width[i], table.height[i] = found["width"], found["height"]
            table.grey_std[i] = found["grey_std"]
            table.readable[i] = True
        if progress is not None:
            progress(1)
    return table


def file_findings(paths, table: FileTable) -> Iterator[dict[str, Any]]:
    """One row per problem file: unreadable (truncated named as such), tiny, extreme aspect
    ratio, nearly constant. Rows name the file, the problem and the measured value."""
    for i, reason in sorted(table.errors.items()):
        problem = "truncated" if "truncated" in reason.lower() else "unreadable"
        yield {"path": paths[i], "problem": problem, "value": "", "detail": reason}
    ok = np.flatnonzero(table.readable)
    short, long_ = np.minimum(table.width[ok], table.height[ok]), np.maximum(table.width[ok], table.height[ok])
    for j, i in enumerate(ok):
        size = f"{table.width[i]}x{table.height[i]}"
        if short[j] < TINY_PX:
            yield {"path": paths[i], "problem": "tiny", "value": size, "detail": f"shorter side < {TINY_PX} px"}
        if short[j] > 0 and long_[j] / short[j] > EXTREME_ASPECT:
            ratio = f"{long_[j] / short[j]:.1f}"
            yield {"path": paths[i], "problem": "extreme aspect", "value": ratio, "detail": size}
        if table.grey_std[i] < CONSTANT_STD:
            value = f"{table.grey_std[i]:.2f}"
            yield {"path": paths[i], "problem": "nearly constant", "value": value, "detail": "grey-level std"}


def class_rows(class_names: list[str], labels: np.ndarray, readable: np.ndarray) -> list[dict[str, Any]]:
    """Per class: files and readable images."""
    files = np.bincount(labels, minlength=len(class_names))
    good = np.bincount(labels[readable], minlength=len(class_names))
    return [{"class": n, "files": int(f), "readable": int(g)} for n, f, g in zip(class_names, files, good)]


def class_findings(rows: list[dict[str, Any]], split: str, needs_split: bool, test_size: float) -> list[dict]:
    """Findings about class sizes in one split: no readable image (severe), too few images for a
    stratified validation split or k-fold (severe when the split is to be made from this folder),
    and the imbalance ratio."""
    found = []
    for row in rows:
        if row["readable"] == 0:
            what = "no image files" if row["files"] == 0 else f"none of its {row['files']} files is readable"
            found.append(_finding("empty class", "severe", f"{split}: class {row['class']!r}: {what}", row["class"]))
    if needs_split:
        # a stratified split needs an image of each class on each side; ceil(1 / test_size) images
        # give the validation side one on average
        need = max(MIN_PER_CLASS, math.ceil(1 / test_size))
        few = [r for r in rows if 0 < r["readable"] < need]
        for row in few:
            message = (
                f"{split}: class {row['class']!r} has {row['readable']} readable images; a validation split "
                f"of {test_size:g} needs at least {need}"
            )
            found.append(_finding("too few for validation", "severe", message, row["class"]))
    counts = [r["readable"] for r in rows if r["readable"] > 0]
    if len(counts) > 1 and max(counts) / min(counts) > IMBALANCE_RATIO:
        ratio = max(counts) / min(counts)
        found.append(
            _finding(
                "imbalance",
                "warning",
                f"{split}: largest to smallest class {max(counts)}:{min(counts)} ({ratio:.0f}:1); report macro F1",
                "",
            )
        )
    return found


def _finding(check: str, severity: str, message: str, subject: str) -> dict[str, str]:
    return {"check": check, "severity": severity, "message": message, "subject": subject}
