"""The files a prediction run is asked for: image files, folders and globs, expanded in order."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from clipcls.data.images import IMAGE_EXTENSIONS
from clipcls.errors import ClipclsError


class InputError(ClipclsError, ValueError):
    """An input path that does not exist or matches nothing, naming it."""


@dataclass
class Inputs:
    """Files to predict, in order, and files found in folders that are not images."""

    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _walk_folder(folder: str, found: Inputs) -> None:
    """Add a folder's image files (recursively, sorted, hidden entries skipped) to `found`;
    other files are recorded as skipped so the user sees them."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                found.paths.append(path)
            else:
                found.skipped.append((path, f"not an image file (extension {ext or 'none'!r}); skipped"))


def collect_inputs(specs: Sequence[str]) -> Inputs:
    """Expand files, folders and globs into one ordered, de-duplicated list of files.

    An input that matches nothing is an error (a typo should not silently shrink the output).
    """
    found = Inputs()
    for spec in specs:
        if os.path.isdir(spec):
            _walk_folder(spec, found)
        elif os.path.isfile(spec):
            found.paths.append(spec)
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise InputError(f"no files match {spec!r}")
            for match in matches:
                if os.path.isdir(match):
                    _walk_folder(match, found)
                else:
                    found.paths.append(match)
        else:
            raise InputError(f"input not found: {spec}")
    found.paths = list(dict.fromkeys(found.paths))
    return found
