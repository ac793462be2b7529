"""The one folder walk: every real directory visited once, every real file listed once.

Folders of images are often assembled with symbolic links (a class folder linking to a share,
a subset built of links). `os.walk(followlinks=True)` and a recursive `glob` follow a link back
to an ancestor (`loop -> .`) forever, or until the kernel answers "Too many levels of symbolic
links"; two such links (`a -> .`, `b -> .`) make the walk exponential. Here a directory is
entered only the first time its (device, inode) is seen, and a file is listed only the first
time its (device, inode) is seen, so links still work but each picture is listed once.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterator

Identity = tuple[int, int]  # (st_dev, st_ino)


def is_hidden(name: str) -> bool:
    """Entries a walk skips: dot files and folders (.git, .DS_Store, ._x) and __pycache__."""
    return name.startswith(".") or name == "__pycache__"


def _identity(path: str) -> Identity | None:
    """The (device, inode) a path resolves to, or None when it cannot be followed (a broken or
    looping link)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def walk_files(
    folder: str | os.PathLike,
    on_error: Callable[[str, str], None] | None = None,
    skip: Callable[[str], bool] = is_hidden,
    on_dir: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Files under `folder`, depth first: a folder's files (sorted by name), then its sub-folders
    (sorted). Links are followed, but each real directory is entered once and a symlink to a file
    already listed is not listed again. Hard links are names of their own (data sets made of hard
    links to a few originals, as benchmarks/gpu_measure.py makes, keep their size). Entries whose
    name `skip`s are left out.
    A sub-folder or link that cannot be read is passed to `on_error(path, reason)` and skipped
    (raised when `on_error` is None); `folder` itself must be readable. `on_dir(path)` is
    called for each sub-folder as it is entered."""
    root = os.fspath(folder)
    seen_dirs: set[Identity] = set()
    seen_files: set[Identity] = set()
    first = _identity(root)
    if first is not None:
        seen_dirs.add(first)
    stack = [root]
    while stack:
        directory = stack.pop()
        if on_dir is not None and directory != root:
            on_dir(directory)
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            if directory == root or on_error is None:
                raise
            on_error(directory, f"cannot read folder: {err.strerror or err}")
            continue
        subdirs = []
        for entry in entries:
            if skip(entry.name):
                continue
            identity = _identity(entry.path)
            if identity is None:
                reason = "broken or looping link" if entry.is_symlink() else "cannot be read"
                if on_error is None:
                    raise OSError(f"{entry.path}: {reason}")
                on_error(entry.path, reason)
            elif is_directory(entry):
                if identity not in seen_dirs:
                    seen_dirs.add(identity)
                    subdirs.append(entry.path)
            elif identity not in seen_files or not entry.is_symlink():
                seen_files.add(identity)
                yield entry.path
        stack.extend(reversed(subdirs))


def is_directory(entry: os.DirEntry) -> bool:
    """Whether an entry is, or links to, a directory; a broken or looping link is not."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def expand_glob(pattern: str) -> tuple[list[str], list[str]]:
    """(files, folders) matching a glob, each sorted; `**` stands for any number of folders.
    Patterns with `**` are matched against `walk_files` (Python's recursive glob follows link
    loops forever); others go to `glob.glob`, whose fixed depth cannot loop. A folder inside
    another matched folder is not listed again."""
    if "**" not in pattern:
        matches = sorted(glob.glob(pattern))
        return [m for m in matches if not os.path.isdir(m)], [m for m in matches if os.path.isdir(m)]
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    base = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    wanted = [p for p in parts[fixed:] if p]
    if not os.path.isdir(base):
        return [], []
    files, folders = [], []

    def tidy(path: str) -> str:  # "./a.jpg" -> "a.jpg", as glob.glob writes it
        return os.path.normpath(path) if base == os.curdir else path

    def entered(directory: str) -> None:
        directory = tidy(directory)
        rel = os.path.relpath(directory, base).split(os.sep)
        inside = any(directory.startswith(f + os.sep) for f in folders)
        if not inside and _match(rel, wanted):
            folders.append(directory)

    for path in map(tidy, walk_files(base, on_error=lambda *_: None, on_dir=entered)):
        if _match(os.path.relpath(path, base).split(os.sep), wanted):
            files.append(path)
    return sorted(files), sorted(folders)


def _match(parts: list[str], pattern: list[str]) -> bool:
    """Whether path components match glob components, `**` standing for zero or more of them."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])
