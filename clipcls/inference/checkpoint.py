"""Checkpoint files: atomic writes and safe (weights-only) reads, without Lightning.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then
renamed over the target, so a crash, a kill or a full disk never leaves a half-written file at
the final path: readers see the previous file or the whole new one. Reading never unpickles
arbitrary objects: `torch.load(weights_only=True)`, with no fallback.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from clipcls.errors import ClipclsError
from clipcls.io import atomic_write_bytes


class CheckpointError(ClipclsError, RuntimeError):
    """A checkpoint that cannot be read, naming the file."""


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Serialise in memory first, then write atomically; a failed write (disk full, read-only
    file system) is a CheckpointError naming the file, whose previous version is untouched."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    try:
        atomic_write_bytes(buffer.getvalue(), path)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {err.strerror or err}; the previous file there (if any) is unchanged"
        ) from err


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load with `weights_only=True`; any failure is a CheckpointError naming the file.

    `mmap=True` maps tensors instead of reading them: a cheap way to check a large checkpoint
    (its whole structure is parsed) or to read its metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    _check_format(path, mmap)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated zip, foreign pickle payload, wrong format...
        raise CheckpointError(f"cannot load checkpoint {path}: {describe_load_error(err)}") from err


ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's archive; the pre-1.6 pickle format


def _check_format(path: Path, mmap: bool) -> None:
    """Say what the file is not, before torch answers with advice about its own save options."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return
    if head.startswith(PICKLE_MAGIC):
        if mmap:
            raise CheckpointError(
                f"cannot load checkpoint {path}: it is in the legacy (PyTorch < 1.6) format, which cannot be "
                "memory-mapped; load and save it again with a current PyTorch"
            )
        return
    raise CheckpointError(
        f"{path} is not a checkpoint: a checkpoint is a zip archive written by torch.save, "
        f"this file begins with {head!r}"
    )


def describe_load_error(err: Exception) -> str:
    """The cause in one line. torch's weights-only refusal is a long how-to whose first advice
    is to turn the weights-only check off; keep only what was refused."""
    text = str(err)
    lines = text.splitlines() or [""]
    if "Weights only load failed" in text or "WeightsUnpickler error:" in text:
        # torch words the refusal differently from version to version ("Unsupported global: GLOBAL
        # os.system was not an allowed global", "Trying to load unsupported GLOBAL posix.system
        # whose module posix is blocked"); name the object when it says which, never its advice
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds Python objects other than tensors and plain data, which could run code; refused{what}"
    return f"{type(err).__name__}: {lines[0]}"
