"""`clipcls export`: write a trained model as a self-contained HuggingFace-format directory, or as
an ONNX / OpenVINO graph from pixels to class probabilities for serving without torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipcls.commands.common import run_command
from clipcls.errors import ClipclsError

if TYPE_CHECKING:
    from clipcls.inference.trained_model import TrainedModel

FORMATS = ("hf", "onnx", "openvino")


class ExportUsageError(ClipclsError, ValueError):
    """Export options that do not go together, naming them."""


EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an earlier HF export.

--format hf (default): CLIP weights (safetensors), tokenizer, image processor, head, clipcls.json.
--format onnx: model.onnx, one graph from normalised pixels (N x 3 x H x W, any N) to the
  probabilities of the head, the text scores and their ensemble, with the class-description
  embeddings baked in; preprocessing.json (size, mean, std, resize mode) and clipcls_graph.json
  (class names) beside it. Checked with onnx.checker and against PyTorch through onnxruntime
  (max probability difference <= 1e-4) before it is kept. Needs pip install 'clipcls[deploy]'.
--format openvino: the same graph converted with openvino.convert_model (model.xml/.bin, fp32).
  --int8 --calibration DIR quantises it to INT8 with NNCF's post-training quantisation (at most
  --calibration-size images of DIR, evenly spread over its sorted files; labels not needed). The
  INT8 model replaces model.xml/.bin. When DIR is a labelled folder <class>/<images> (or with
  --eval-data DIR), fp32 and INT8 accuracy and macro F1 on it are printed and stored in
  clipcls_graph.json ("quantization"). Calibrating and evaluating on the same folder flatters INT8
  slightly; pass a separate --eval-data for an unbiased figure.

--wise-alpha A exports the WiSE-FT interpolation (Wortsman et al., CVPR 2022)
  weights = (1 - A) * initial + A * fine-tuned
of the CLIP weights and of the head, where "initial" is the base CLIP of the training config
(config model_name, loaded again) and the head training started from. A = 0 is the original
model (with head_init=zeroshot its head reproduces zero-shot CLIP exactly), A = 1 the fine-tune.

Exit status: 0 exported; 2 bad usage, an unreadable model, OUT exists (without --overwrite) or a
write error (nothing is left at OUT).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `clipcls export`."""
    parser = argparse.ArgumentParser(
        prog="clipcls export",
        description="Write a self-contained HuggingFace-format model directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint, run directory or export directory")
    parser.add_argument("--out", required=True, type=Path, help="directory to create")
    parser.add_argument("--format", choices=FORMATS, default="hf", help="hf (default), onnx or openvino (see below)")
    parser.add_argument(
        "--wise-alpha",
        type=float,
        default=None,
        help="export (1-A)*initial + A*fine-tuned weights (0 = original model, 1 = fine-tune)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT directory")
    int8 = parser.add_argument_group("INT8 quantisation (--format openvino; needs nncf)")
    int8.add_argument("--int8", action="store_true", help="quantise the OpenVINO export to INT8 (NNCF)")
    int8.add_argument("--calibration", type=Path, help="image folder (labelled or not) for the INT8 ranges")
    int8.add_argument(
        "--calibration-size", type=int, default=300, help="use at most this many calibration images (default 300)"
    )
    int8.add_argument("--eval-data", type=Path, help="labelled folder on which fp32 and INT8 are compared")
    return parser


def check_int8_args(args: argparse.Namespace) -> None:
    """--int8 needs --format openvino and --calibration; the INT8 options need --int8."""
    if args.int8 and args.format != "openvino":
        raise ExportUsageError(f"--int8 needs --format openvino (got --format {args.format})")
    if args.int8 and args.calibration is None:
        raise ExportUsageError("--int8 needs --calibration DIR (a folder of images)")
    if not args.int8 and (args.calibration is not None or args.eval_data is not None):
        raise ExportUsageError("--calibration and --eval-data apply only with --int8")


GRAPH_SUFFIXES = (".onnx", ".xml", ".bin")


def check_out_name(out: Path) -> None:
    """An export is a directory: `--out demo.onnx` would make a directory named like a file
    (holding model.onnx), which every tool then mistakes for a graph file."""
    if out.suffix.lower() in GRAPH_SUFFIXES:
        raise ExportUsageError(
            f"--out {out}: an export is a directory (it holds model.onnx or model.xml, preprocessing.json and "
            f"clipcls_graph.json), not a {out.suffix} file; give a directory name such as {out.with_suffix('')}"
        )


def main(argv: list[str] | None = None) -> int:
    """`clipcls export MODEL --out DIR [--format F] [--wise-alpha A]`; returns the exit status."""
    return run_command(build_parser(), export, argv)


def export(args: argparse.Namespace) -> int:
    """Load, optionally interpolate (WiSE-FT), and write the export."""
    from clipcls.export.huggingface import export_model
    from clipcls.export.replace import check_replaceable
    from clipcls.inference.trained_model import load_trained
    from clipcls.model.wise import check_alpha
    from clipcls.output_guard import check_output

    check_int8_args(args)
    check_out_name(args.out)
    check_replaceable(args.out, Path(args.model), args.overwrite)  # before the (slow) model load
    check_output(args.out, args.model, input_folders=[p for p in (args.calibration, args.eval_data) if p])
    if args.wise_alpha is not None:
        check_alpha(args.wise_alpha)
    if args.format != "hf":
        from clipcls.optional import require

        extra = (("openvino",) if args.format == "openvino" else ()) + (("nncf",) if args.int8 else ())
        for module in ("onnx", "onnxscript", "onnxruntime") + extra:
            require(module, f"--format {args.format}")  # before the slow model load
    model = load_trained(args.model)
    if args.wise_alpha is not None:
        model = model.interpolated(args.wise_alpha)
    parity = ""
    if args.format == "hf":
        export_model(model, args.out, overwrite=args.overwrite)
    elif args.int8:
        diff = write_int8(model, args)
        parity = f", INT8; fp32 graph's max probability difference with PyTorch {diff:.1e}"
    else:
        diff = write_graph(model, args.format, args.out, args.overwrite)
        parity = f"; max probability difference with PyTorch {diff:.1e}"
    alpha = "" if model.wise_alpha is None else f" (WiSE-FT alpha {model.wise_alpha:g})"
    print(f"exported {len(model.class_names)} classes{alpha} to {args.out} ({args.format}{parity})", file=sys.stderr)
    return 0


def write_graph(model: TrainedModel, fmt: str, out: Path, overwrite: bool) -> float:
    """The ONNX or OpenVINO export; returns its measured difference with PyTorch."""
    if fmt == "onnx":
        from clipcls.export.onnx import export_onnx

        return export_onnx(model, out, overwrite=overwrite)
    from clipcls.export.openvino import export_openvino

    return export_openvino(model, out, overwrite=overwrite)


def write_int8(model: TrainedModel, args: argparse.Namespace) -> float:
    """The INT8 OpenVINO export; prints the fp32 vs INT8 figures and returns the fp32 graph's
    difference with PyTorch."""
    import torch

    from clipcls.export.quantize import export_openvino_int8, format_report, plan_int8

    request = plan_int8(
        args.calibration, args.eval_data, list(model.class_names), args.calibration_size, torch.get_num_threads()
    )
    diff = export_openvino_int8(model, args.out, request, overwrite=args.overwrite)
    print(format_report(request.report))
    return diff
