"""The one check every command runs on an output path the user names (`--out`): it must not
overwrite the model being used or an input being read.

`predict --out victim.ckpt` once replaced the checkpoint with a CSV, and `--out photo.png` an
input image: the atomic writer faithfully replaces whatever the path names. So before anything is
written, the output (and any file written beside it) is resolved, links included, and refused
when it is the model file, lies inside an export directory given as the model, or inside the
parts of a run directory that make up the model (checkpoints/, base_model/, config.yaml); or
when it is one of the input files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from clipcls.errors import ClipclsError

RUN_PARTS = ("checkpoints", "base_model", "config.yaml")  # what makes a run directory a model
EXPORT_MARKERS = ("clipcls.json", "clipcls_graph.json")  # = clipcls.export.replace.EXPORT_MARKERS


class OutputError(ClipclsError, ValueError):
    """An output path that would overwrite the model or an input, naming both."""


def run_directory(model: Path) -> Path | None:
    """The run directory of a model path: the path itself for a run directory, the run of a
    checkpoint kept in its `checkpoints/`; None otherwise."""
    if model.is_dir() and ((model / "checkpoints").is_dir() or (model / "config.yaml").is_file()):
        return model
    if model.is_file() and model.parent.name == "checkpoints":
        return model.parent.parent
    return None


def protected_paths(model: str | os.PathLike) -> list[tuple[Path, str]]:
    """Resolved paths (with what they are) that no output may be or lie inside."""
    given = Path(model)
    resolved = given.resolve()
    run = run_directory(resolved)
    if run is None:
        if resolved.is_dir() and not any((resolved / marker).is_file() for marker in EXPORT_MARKERS):
            return []  # not a model at all: loading it fails with its own message
        kind = "the model directory" if resolved.is_dir() else "the model"
        return [(resolved, f"{kind} {given}")]
    parts = [(run / part, f"the run's {part} ({run / part})") for part in RUN_PARTS]
    if resolved != run:
        parts.insert(0, (resolved, f"the model {given}"))
    return parts


def check_output(
    out: str | os.PathLike,
    model: str | os.PathLike | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    flag: str = "--out",
    input_folders: Iterable[str | os.PathLike] = (),
) -> None:
    """Raise OutputError if writing `out` (a file or a directory to create) could replace the
    model, a part of its run or one of `inputs`, or would put files inside one of
    `input_folders` (a labelled data set). Inputs are compared only when `out` exists (a path
    that does not exist cannot be an input)."""
    target = Path(out).resolve()
    guarded = protected_paths(model) if model is not None else []
    guarded += [(Path(f).resolve(), f"the data folder {f}") for f in input_folders]
    for path, what in guarded:
        if target == path or path in target.parents:
            raise OutputError(f"{flag} {out} would overwrite {what}; choose another path")
    if not target.exists():
        return
    identity = _identity(target)
    for path in inputs:
        if _identity(Path(path)) == identity:
            raise OutputError(f"{flag} {out} would overwrite the input {path}; choose another path")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino
