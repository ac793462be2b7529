"""`clipcls predict`: classify new images with a trained model and write a CSV.

Inputs are streamed through a DataLoader and each batch's rows are written as soon as it is
scored, so memory stays flat however many images there are. Both the CSV and the list of
unreadable files go to temporary files that are renamed only when every image has been seen, so
an interrupted run never leaves a half CSV that looks complete.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clipcls.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from clipcls.data.index import PathTable
from clipcls.errors import ClipclsError
from clipcls.predictor import SCORERS, PredictError, Predictor

FORMATS = ("full", "submission")
EXIT_OK, EXIT_UNREADABLE, EXIT_ERROR = 0, 1, 2

EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an export directory.
INPUTS are image files, folders (searched recursively, hidden entries skipped) or quoted globs
("photos/**/*.jpg"). Files named on the command line are always tried; inside folders only files
with an image extension are, and other files are listed as skipped.

Output (--format full): path, prediction, probability, then top1, top1_probability ... topK.
Output (--format submission): id,label with id = the file name without its extension.
Files that could not be predicted are listed with the reason in OUT.errors.csv (path,error).

Exit status:
  0  every input file was predicted
  1  some files were unreadable or not images: rows were written for the rest, the others are
     listed in OUT.errors.csv
  2  bad usage, an input path that does not exist, no images found, or a model that cannot be
     loaded; nothing is written
"""


# --------------------------------------------------------------------------- inputs
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
                raise PredictError(f"no files match {spec!r}")
            for match in matches:
                if os.path.isdir(match):
                    _walk_folder(match, found)
                else:
                    found.paths.append(match)
        else:
            raise PredictError(f"input not found: {spec}")
    found.paths = list(dict.fromkeys(found.paths))
    return found


class PredictDataset(Dataset):
    """(position, pixels, None) per readable file, (position, None, reason) per unreadable one:
    a worker never raises on a bad file, and the reason reaches the errors CSV."""

    def __init__(self, paths: PathTable, predictor: Predictor) -> None:
        self.paths = paths
        self.transform, self.draft_size = predictor.transform, predictor.draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, self.transform(load_image(self.paths[i], draft_size=self.draft_size)), None
        except ImageLoadError as err:
            return i, None, err.reason
        except Exception as err:  # noqa: BLE001 - a transform failure must not kill the worker
            return i, None, f"{type(err).__name__}: {err}"


def collate_predict(batch: list) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """Positions and stacked pixels of the readable samples, plus (position, reason) of the rest."""
    good = [(i, px) for i, px, _ in batch if px is not None]
    bad = [(i, reason) for i, px, reason in batch if px is None]
    pixels = torch.stack([px for _, px in good]) if good else None
    return [i for i, _ in good], pixels, bad


# --------------------------------------------------------------------------- output
@contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A text file written next to `path` and renamed onto it only if the block succeeds."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def csv_header(fmt: str, top_k: int) -> list[str]:
    """Column names of the full or submission CSV."""
    if fmt == "submission":
        return ["id", "label"]
    tops = [col for i in range(1, top_k + 1) for col in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "probability", *tops]


def csv_rows(paths: list[str], probs: np.ndarray, names: list[str], fmt: str, top_k: int) -> list[list[Any]]:
    """One row per image: the best class and its probability, then the top-k (sorted)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    rows = []
    for path, p, top in zip(paths, probs, order):
        if fmt == "submission":
            rows.append([Path(path).stem, names[top[0]]])
            continue
        tops = [v for c in top for v in (names[c], f"{p[c]:.6f}")]
        rows.append([path, names[top[0]], f"{p[top[0]]:.6f}", *tops])
    return rows


@dataclass
class RunSummary:
    """What a predict run wrote: rows, unreadable/skipped files (the first few kept for stderr),
    and ids that occur more than once in a submission."""

    rows: int = 0
    errors: int = 0
    first_errors: list[tuple[str, str]] = field(default_factory=list)
    duplicate_ids: int = 0

    def add_error(self, writer: Any, path: str, reason: str) -> None:
        """One line of the errors CSV; the first ten are kept for the stderr summary."""
        writer.writerow([path, reason])
        self.errors += 1
        if len(self.first_errors) < 10:
            self.first_errors.append((path, reason))


def stream_predictions(
    predictor: Predictor, loader: DataLoader, paths: PathTable, skipped: list[tuple[str, str]],
    out: TextIO, errors: TextIO, fmt: str, top_k: int,
) -> RunSummary:
    """Score batch after batch, writing rows (and error lines) as each batch finishes."""
    writer, error_writer = csv.writer(out), csv.writer(errors)
    writer.writerow(csv_header(fmt, top_k))
    error_writer.writerow(["path", "error"])
    summary, seen_ids = RunSummary(), set()
    for path, reason in skipped:
        summary.add_error(error_writer, path, reason)
    for positions, pixels, bad in loader:
        for position, reason in bad:
            summary.add_error(error_writer, paths[position], reason)
        if pixels is None:
            continue
        probs = predictor.probabilities(predictor.logits(pixels))
        rows = csv_rows([paths[i] for i in positions], probs, predictor.class_names, fmt, top_k)
        writer.writerows(rows)
        summary.rows += len(rows)
        if fmt == "submission":
            ids = [row[0] for row in rows]
            summary.duplicate_ids += sum(i in seen_ids for i in ids) + len(ids) - len(set(ids))
            seen_ids.update(ids)
    return summary


# --------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    """The command line of `clipcls predict`; the exit statuses are in its epilog."""
    parser = argparse.ArgumentParser(
        prog="clipcls predict", description="Predict classes for image files, folders or globs; write a CSV.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint, run directory or export directory")
    parser.add_argument("inputs", nargs="+", help="image files, folders or globs")
    parser.add_argument("--out", required=True, type=Path, help="CSV to write (replaced atomically)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--scorer", choices=SCORERS, default="head",
                        help="head (default), text (description similarity) or their ensemble")
    parser.add_argument("--format", choices=FORMATS, default="full",
                        help="full (path, prediction, top-k) or submission (id,label)")
    parser.add_argument("--extra-classes", type=Path, default=None,
                        help="YAML of class -> description(s) to add at predict time (forces --scorer text)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--workers", type=int, default=None,
                        help="image-loading processes (default: min(8, CPUs) with a GPU, CPUs // 4 on CPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls predict ...`; returns the exit status documented in --help."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers fork after the tokenizer ran
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), returned rather than raised
        return int(exit_.code or 0)
    try:
        return run(args)
    except (ClipclsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    """Validate, load, stream the predictions, then report what could not be read."""
    from clipcls.data.datamodule import balance_cpu_threads, default_workers
    from clipcls.data.descriptions import read_descriptions
    from clipcls.trained import load_trained

    if args.top_k < 1 or args.batch_size < 1 or (args.workers is not None and args.workers < 0):
        raise PredictError("--top-k and --batch-size must be >= 1, --workers >= 0")
    if args.out.is_dir():
        raise PredictError(f"--out {args.out} is a directory; give the CSV file to write")
    found = collect_inputs(args.inputs)
    if not found.paths:
        raise PredictError(f"no image files found in {', '.join(args.inputs)}")
    extra = read_descriptions(args.extra_classes) if args.extra_classes else None
    predictor = Predictor(load_trained(args.model), args.device, args.scorer, extra)
    if extra and args.scorer != "text":
        print(f"note: --extra-classes scores every class by description similarity (--scorer text), "
              f"not {args.scorer}: the head knows only the trained classes", file=sys.stderr)
    top_k = min(args.top_k, len(predictor.class_names))
    paths = PathTable(found.paths)
    batches = -(-len(paths) // args.batch_size)
    on_cpu = predictor.device.type == "cpu"  # the CPUs both load and compute: split them
    workers = min(default_workers(args.workers, cpu_compute=on_cpu), batches)
    if on_cpu:
        balance_cpu_threads(workers)
    loader = DataLoader(PredictDataset(paths, predictor), batch_size=args.batch_size, num_workers=workers,
                        collate_fn=collate_predict, pin_memory=predictor.device.type == "cuda")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    errors_path = out.with_name(out.name + ".errors.csv")
    with atomic_text_file(out) as handle, atomic_text_file(errors_path) as err_handle:
        summary = stream_predictions(predictor, loader, paths, found.skipped, handle, err_handle, args.format, top_k)
    if summary.errors == 0:
        errors_path.unlink(missing_ok=True)  # no errors: no errors file (and no stale one from before)
    report(summary, out, errors_path)
    return EXIT_UNREADABLE if summary.errors else EXIT_OK


def report(summary: RunSummary, out: Path, errors_path: Path) -> None:
    """One line for the output, and the unreadable files (first ten) on stderr."""
    print(f"wrote {summary.rows} predictions to {out}", file=sys.stderr)
    if summary.duplicate_ids:
        print(f"warning: {summary.duplicate_ids} row(s) repeat an id already written (same file name in "
              "different folders); a submission needs unique ids", file=sys.stderr)
    if not summary.errors:
        return
    print(f"{summary.errors} file(s) could not be predicted; all are listed in {errors_path}:", file=sys.stderr)
    for path, reason in summary.first_errors:
        print(f"  {path}: {reason}", file=sys.stderr)
    if summary.errors > len(summary.first_errors):
        print(f"  ... and {summary.errors - len(summary.first_errors)} more", file=sys.stderr)
