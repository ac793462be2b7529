"""What `export --overwrite` may replace: only an earlier export that does not hold the source.

`--overwrite` used to delete whatever the output directory held: unrelated files, the current
directory (`--out .`, which then crashed), even the run directory being exported, whose
checkpoints were gone afterwards. It now replaces a directory only when it is an earlier clipcls
export (a valid clipcls.json or clipcls_graph.json, not merely a file of that name) and neither
is nor contains the source.
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
    if any(out.iterdir()) and not is_earlier_export(out):
        raise ReplaceError(
            f"refusing to replace {out}: it is not an earlier clipcls export (no valid {' or '.join(EXPORT_MARKERS)}); "
            "choose an empty or new --out"
        )


def is_earlier_export(directory: Path) -> bool:
    """Whether `directory` holds a complete, valid export marker: clipcls.json of a format this
    code reads, with class names and image size, or a valid clipcls_graph.json. An empty or
    hand-made marker file next to someone's thesis does not make the folder ours to delete."""
    from clipcls.inference.onnx_predictor import read_graph_meta
    from clipcls.inference.trained_model import read_export_meta

    if (directory / EXPORT_MARKERS[0]).is_file():
        try:
            meta = read_export_meta(directory)
        except ClipclsError:
            return False
        names = meta.get("class_names")
        return isinstance(names, list) and bool(names) and "image_size" in meta and "head" in meta
    if (directory / EXPORT_MARKERS[1]).is_file():
        try:
            meta = read_graph_meta(directory)
        except ClipclsError:
            return False
        return isinstance(meta["class_names"], list) and bool(meta["class_names"])
    return False
