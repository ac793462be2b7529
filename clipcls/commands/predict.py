"""`clipcls predict`: classify new images with a trained model and write a CSV.

Inputs are streamed through the shared loader and each batch's rows are written as soon as it is
scored (flat memory). The CSV and the list of unreadable files go to temporary files renamed only
when every image has been seen, so an interrupted run never leaves a half CSV that looks complete.
Nothing on this path imports Lightning or torchmetrics, and `--help` imports no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipcls.commands.common import add_decision_args, add_loader_args, add_scorer_arg, decision_options, run_command
from clipcls.errors import EXIT_OK, EXIT_PARTIAL, ClipclsError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from clipcls.data.index import PathTable
    from clipcls.inference.onnx_predictor import OnnxPredictor
    from clipcls.inference.prediction_csv import RunSummary
    from clipcls.inference.predictor import Predictor

FORMATS = ("full", "submission")  # = clipcls.inference.prediction_csv.FORMATS


class PredictUsageError(ClipclsError, ValueError):
    """A bad predict option or input, naming it (defined here rather than beside the torch
    Predictor, so that predicting with an ONNX export imports no torch)."""


EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an export directory
(HuggingFace format, or ONNX / OpenVINO: run without torch by onnxruntime / openvino on the CPU).
INPUTS are image files, folders (searched recursively, hidden entries skipped) or quoted globs
("photos/**/*.jpg"). Files named on the command line are always tried; inside folders only files
with an image extension are, and other files (Thumbs.db, notes) are skipped with a note. Links
are followed, but each real folder and file is read once. OUT may not be the model, a file of
its run (checkpoints/, base_model/, config.yaml) or an input.

Output (--format full): path, prediction, probability, then top1, top1_probability ... topK,
then verdict (the class, or "uncertain" under --max-error) and rule (argmax, max-error or
good-class: what decided it). Probabilities are calibrated by the temperatures fitted on the
validation split at training time (--uncalibrated: raw). --max-error 0.02 auto-decides an image
only above a confidence threshold at which, on the validation split, the error rate of decided
images is <= 2% at 95% confidence; --good-class clean --max-escape 0.005 passes an image as clean
only when P(defect) is below a threshold that lets <= 0.5% of defective images through.
Output (--format submission): id,label with id = the file name without its extension.
Files that could not be predicted are listed with the reason in OUT.errors.csv (path,error).

Exit status:
  0  every input file was predicted
  1  some files were unreadable or not an allowed image format: rows were written for the
     rest, the others are listed in OUT.errors.csv
  2  bad usage, an input path that does not exist, no images found, or a model that cannot be
     loaded; nothing is written
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `clipcls predict`; the exit statuses are in its epilog."""
    parser = argparse.ArgumentParser(
        prog="clipcls predict",
        description="Predict classes for image files, folders or globs; write a CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint, run directory or export directory")
    parser.add_argument("inputs", nargs="+", help="image files, folders or globs")
    parser.add_argument("--out", required=True, type=Path, help="CSV to write (replaced atomically)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    add_scorer_arg(parser, "head (default), text (description similarity) or their ensemble")
    parser.add_argument(
        "--format", choices=FORMATS, default="full", help="full (path, prediction, top-k) or submission (id,label)"
    )
    parser.add_argument(
        "--extra-classes",
        type=Path,
        default=None,
        help="YAML of class -> description(s) to add at predict time (forces --scorer text)",
    )
    add_decision_args(parser)
    add_loader_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls predict ...`; returns the exit status documented in --help."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers fork after the tokenizer ran
    return run_command(build_parser(), run, argv)


def run(args: argparse.Namespace) -> int:
    """Validate, load, stream the predictions, then report what could not be read."""
    from clipcls.data.index import PathTable
    from clipcls.data.inputs import collect_inputs
    from clipcls.inference.onnx_predictor import is_graph_export
    from clipcls.inference.prediction_csv import stream_predictions
    from clipcls.io import atomic_open
    from clipcls.output_guard import check_output

    if args.top_k < 1:
        raise PredictUsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.out.is_dir():
        raise PredictUsageError(f"--out {args.out} is a directory; give the CSV file to write")
    found = collect_inputs(args.inputs)
    if not found.paths:
        raise PredictUsageError(f"no image files found in {', '.join(args.inputs)}")
    for written in (args.out, args.out.with_name(args.out.name + ".errors.csv")):
        check_output(written, args.model, found.paths)
    note_ignored(found.ignored)
    paths = PathTable(found.paths)
    setup = graph_setup if is_graph_export(args.model) else torch_setup
    predictor, loader = setup(args, paths)
    top_k = min(args.top_k, len(predictor.class_names))
    out = args.out
    errors_path = out.with_name(out.name + ".errors.csv")
    with atomic_open(out) as handle, atomic_open(errors_path) as err_handle:
        summary = stream_predictions(predictor, loader, paths, found.skipped, handle, err_handle, args.format, top_k)
    if summary.errors == 0:
        errors_path.unlink(missing_ok=True)  # no errors: no errors file (and no stale one from before)
    report(summary, out, errors_path)
    report_rule(predictor, args.uncalibrated)
    return EXIT_PARTIAL if summary.errors else EXIT_OK


def torch_setup(args: argparse.Namespace, paths: PathTable) -> tuple[Predictor, Iterable]:
    """The PyTorch predictor for a checkpoint, run directory or HF export, and its loader."""
    from clipcls.data.descriptions import read_descriptions
    from clipcls.data.loaders import inference_loader
    from clipcls.inference.predictor import Predictor
    from clipcls.inference.trained_model import load_trained

    extra = read_descriptions(args.extra_classes) if args.extra_classes else None
    model = load_trained(args.model)
    predictor = Predictor(model, args.device, args.scorer, extra, **decision_options(args))
    if extra and args.scorer != "text":  # None (the run's default) is noted too
        print(
            f"note: --extra-classes scores every class by description similarity (--scorer text), "
            f"not {args.scorer or 'the default'}: the head knows only the trained classes",
            file=sys.stderr,
        )
    loader = inference_loader(
        paths,
        None,
        model.image_size,
        model.image_mean,
        model.image_std,
        args.batch_size,
        args.workers,
        predictor.device,
        model.config.get("resize", "squash"),
    )
    return predictor, loader


def graph_setup(args: argparse.Namespace, paths: PathTable) -> tuple[OnnxPredictor, Iterable]:
    """The ONNX Runtime / OpenVINO predictor for a graph export and its torch-free loader. The
    description embeddings are baked into the graph, so classes cannot be added here."""
    from clipcls.data.array_batches import array_batches
    from clipcls.inference.onnx_predictor import OnnxPredictor, compute_threads

    if args.extra_classes:
        raise PredictUsageError(
            f"--extra-classes needs the text tower, which an ONNX/OpenVINO export ({args.model}) does not "
            "hold; use the run directory or a HuggingFace export"
        )
    if args.device not in ("auto", "cpu"):
        raise PredictUsageError(f"--device {args.device}: an ONNX/OpenVINO export runs on the CPU here")
    workers = args.workers if args.workers is not None else default_cpu_workers()
    predictor = OnnxPredictor(args.model, args.scorer, threads=compute_threads(workers), **decision_options(args))
    return predictor, array_batches(paths, predictor.preprocessing.load, args.batch_size, workers)


def default_cpu_workers() -> int:
    """Decoding processes when the CPU also runs the model: a quarter of the CPUs, as
    `clipcls.data.loaders.default_workers` gives the torch path (0 on 2 cores: in-line)."""
    try:
        return len(os.sched_getaffinity(0)) // 4
    except AttributeError:  # macOS, Windows
        return (os.cpu_count() or 1) // 4


def note_ignored(ignored: list[str]) -> None:
    """A note (not an error) for files in input folders without an image extension (Thumbs.db,
    notes.txt): they are not predicted and do not change the exit status."""
    if not ignored:
        return
    shown = ", ".join(ignored[:3]) + (f" and {len(ignored) - 3} more" if len(ignored) > 3 else "")
    print(f"note: skipped {len(ignored)} file(s) without an image extension: {shown}", file=sys.stderr)


def report_rule(predictor: Predictor | OnnxPredictor, uncalibrated: bool) -> None:
    """One line on stderr for the decision rule in force and what it did on validation."""
    from clipcls.inference.decisions import describe_rule

    if not uncalibrated and not predictor.calibration.fitted:
        why = predictor.calibration.record.get("warning") or "the model holds no calibration"
        print(f"note: probabilities are uncalibrated ({why})", file=sys.stderr)
    if predictor.rule is not None:
        print(describe_rule(predictor.rule), file=sys.stderr)


def report(summary: RunSummary, out: Path, errors_path: Path) -> None:
    """One line for the output, and the unreadable files (first ten) on stderr."""
    print(f"wrote {summary.rows} predictions to {out}", file=sys.stderr)
    if summary.duplicate_ids:
        print(
            f"warning: {summary.duplicate_ids} row(s) repeat an id already written (same file name in "
            "different folders); a submission needs unique ids",
            file=sys.stderr,
        )
    if not summary.errors:
        return
    print(f"{summary.errors} file(s) could not be predicted; all are listed in {errors_path}:", file=sys.stderr)
    for path, reason in summary.first_errors:
        print(f"  {path}: {reason}", file=sys.stderr)
    if summary.errors > len(summary.first_errors):
        print(f"  ... and {summary.errors - len(summary.first_errors)} more", file=sys.stderr)
