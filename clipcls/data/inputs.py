"""The files a prediction run is asked for: image files, folders and globs, expanded in order."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from clipcls.data.images import IMAGE_EXTENSIONS
from clipcls.data.walk import expand_glob, walk_files
from clipcls.errors import ClipclsError


class InputError(ClipclsError, ValueError):
    """An input path that does not exist or matches nothing, naming it."""


@dataclass
class Inputs:
    """Files to predict, in order; files in folders that could not be listed (`skipped`, with the
    reason: reported as errors); and files in folders without an image extension (`ignored`:
    a Thumbs.db or notes.txt beside the pictures is noted, not an error)."""

    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _walk_folder(folder: str, found: Inputs) -> None:
    """Add a folder's image files (recursively, each real file once, hidden entries skipped) to
    `found`; other files are recorded as ignored so the user sees them."""
    for path in walk_files(folder, on_error=lambda p, reason: found.skipped.append((p, reason))):
        if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
            found.paths.append(path)
        else:
            found.ignored.append(path)


def collect_inputs(specs: Sequence[str]) -> Inputs:
    """Expand files, folders and globs into one ordered list of files, each real file once.

    An input that matches nothing is an error (a typo should not silently shrink the output).
    """
    found = Inputs()
    for spec in specs:
        if os.path.isdir(spec):
            _walk_folder(spec, found)
        elif os.path.isfile(spec):
            found.paths.append(spec)
        elif glob.has_magic(spec):
            files, folders = expand_glob(spec)
            if not files and not folders:
                raise InputError(f"no files match {spec!r}")
            found.paths += files
            for folder in folders:
                _walk_folder(folder, found)
        else:
            raise InputError(f"input not found: {spec}")
    found.paths = _each_file_once(found.paths)
    return found


def _each_file_once(paths: list[str]) -> list[str]:
    """`paths` in order, each real file once: two inputs, or a folder and a link into it, may
    reach the same file under different names."""
    seen, unique = set(), []
    for path in paths:
        try:
            info = os.stat(path)
            key: object = (info.st_dev, info.st_ino)
        except OSError:  # missing or unreadable: kept, and reported when it is loaded
            key = path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
