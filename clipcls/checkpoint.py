"""Checkpoint files: atomic writes and safe (weights-only) reads.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then
renamed over the target, so a crash, a kill or a full disk never leaves a half-written file at
the final path: readers see the previous file or the whole new one. Reading never unpickles
arbitrary objects: `torch.load(weights_only=True)`, with no fallback.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from clipcls.errors import ClipclsError


class CheckpointError(ClipclsError, RuntimeError):
    """A checkpoint that cannot be read, naming the file."""


TEMP_GLOB = ".*.tmp"  # what atomic_write_bytes leaves behind if the process is killed mid-write


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself survive a power cut


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms (Windows) that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer left in `directory`; returns what was removed."""
    stale = sorted(Path(directory).glob(TEMP_GLOB)) if Path(directory).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


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
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated zip, foreign pickle payload, wrong format...
        raise CheckpointError(f"cannot load checkpoint {path}: {describe_load_error(err)}") from err


def describe_load_error(err: Exception) -> str:
    """The cause in one line. torch's weights-only refusal is a long how-to whose first advice
    is to turn the weights-only check off; keep only what was refused."""
    lines = str(err).splitlines() or [""]
    marker = "WeightsUnpickler error:"
    refused = [line.split(marker, 1)[1].strip() for line in lines if marker in line]
    if refused:
        what = refused[0].split(" was not an allowed global")[0]
        return f"it holds Python objects other than tensors and plain data, which could run code; refused ({what})"
    return f"{type(err).__name__}: {lines[0]}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves and weights-only loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # always weights-only, whatever the caller asks for
        return load_checkpoint_file(path, map_location or "cpu")
