"""The one way clipcls writes files: atomically, so a reader never sees half a file.

Every file is written under a temporary name in the target's directory, flushed to disk and
renamed over the target; a crash, a kill or a full disk leaves the previous file (or none),
never a truncated one. Directories are built under a temporary name and swapped in the same way.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_GLOB = ".*.tmp"  # what an atomic writer leaves behind if the process is killed mid-write


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` survive a power cut (where the platform allows it)."""
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


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", fsync: bool = True) -> Iterator[IO[Any]]:
    """A file opened under a temporary name next to `path` and renamed onto it only if the block
    succeeds. `mode` is "w" (UTF-8 text, no newline translation) or "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        _umask_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: str | os.PathLike, fsync: bool = True) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(text.encode("utf-8"), path)


def write_json(data: Any, path: str | os.PathLike) -> None:
    """UTF-8 JSON with class names kept readable, written atomically."""
    atomic_write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", path)


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer left in `directory`; returns what was removed."""
    stale = sorted(Path(directory).glob(TEMP_GLOB)) if Path(directory).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask_permissions(path: Path) -> None:
    """The permissions the user's umask allows: mkstemp (and safetensors) create files readable
    by their owner only, which breaks a model directory or CSV shared with others."""
    mask = os.umask(0)
    os.umask(mask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """An empty directory, built beside `target` and swapped in for it when the block succeeds.

    Any failure removes the temporary directory, so `target` either keeps its old contents (or
    does not exist) or holds everything the block wrote. An existing target is replaced only
    with `overwrite`; it is moved aside first and deleted once the new one is in place.
    """
    target = Path(target)
    if target.exists() and not (overwrite and target.is_dir()):
        raise FileExistsError(
            17, "already exists" + ("" if target.is_dir() else " and is not a directory"), str(target)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_directories(target)
    tmp = target.with_name(temp_directory_name(target))
    tmp.mkdir()  # mkdir, not mkdtemp: ordinary permissions once renamed
    try:
        yield tmp
        for path in tmp.iterdir():
            _umask_permissions(path)
        _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def temp_directory_name(target: str | os.PathLike, pid: int | None = None, suffix: str = "tmp") -> str:
    """The name of a directory built (`tmp`) or set aside (`old`) beside `target`: hidden, with
    the writing process's id, so a later writer knows whether it is a dead one's leftover."""
    return f".{Path(target).name}.{os.getpid() if pid is None else pid}-{uuid.uuid4().hex[:8]}.{suffix}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return pid < 2**22  # another user's process (PermissionError); beyond any pid: not a process
    return True


def remove_stale_directories(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary directories a killed writer (`kill -9`, a power cut) left beside
    `target`: ours by name (`temp_directory_name`, or the pid-less names of earlier versions) and
    written by a process that no longer runs. Returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)-)?[0-9a-f]{{8}}\.(?:tmp|old)$")
    stale = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*"):
        found = pattern.match(path.name)
        if found and path.is_dir() and not path.is_symlink():
            if found.group(1) is None or not _process_alive(int(found.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    return stale


def _swap_in(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing target is moved aside first and deleted after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(temp_directory_name(target, suffix="old"))
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the previous directory back
        raise
    shutil.rmtree(old, ignore_errors=True)
