"""What `export --overwrite` may replace: only an earlier export that does not hold the source.

`--overwrite` used to delete whatever the output directory held: unrelated files, the current
directory (`--out .`, which then crashed), even the run directory being exported, whose
checkpoints were gone afterwards. It now replaces a directory only when it is an earlier clipcls
export (it has clipcls.json or clipcls_graph.json) and neither is nor contains the source.
"""

from __future__ import annotations

from pathlib import Path

from clipcls.errors import ClipclsError

EXPORT_MARKERS = ("clipcls.json", "clipcls_graph.json")  # an HF export; an ONNX/OpenVINO export


class ReplaceError(ClipclsError):
    """An output directory that --overwrite must not delete, naming it."""


def check_replaceable(out: Path, source: Path, overwrite: bool) -> None:
    """Raise ReplaceError unless writing the export to `out` deletes nothing but an old export."""
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise ReplaceError(f"{out} already exists; pass --overwrite to replace an earlier export there")
    target, origin = out.resolve(), source.resolve()
    if target == origin or target in origin.parents:
        raise ReplaceError(f"refusing to replace {out}: it holds the model being exported ({source})")
    if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        raise ReplaceError(f"refusing to replace {out}: it is (or contains) the current directory")
    if not out.is_dir() or out.is_symlink():
        raise ReplaceError(f"refusing to replace {out}: not an export directory")
    if any(out.iterdir()) and not any((out / marker).is_file() for marker in EXPORT_MARKERS):
        raise ReplaceError(
            f"refusing to replace {out}: it is not an earlier clipcls export (no {' or '.join(EXPORT_MARKERS)}); "
            "choose an empty or new --out"
        )
