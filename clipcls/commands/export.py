"""`clipcls export`: write a trained model as a self-contained HuggingFace-format directory, or as
an ONNX / OpenVINO graph from pixels to class probabilities for serving without torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipcls.commands.common import run_command

if TYPE_CHECKING:
    from clipcls.inference.trained_model import TrainedModel

FORMATS = ("hf", "onnx", "openvino")

EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an earlier HF export.

--format hf (default): CLIP weights (safetensors), tokenizer, image processor, head, clipcls.json.
--format onnx: model.onnx, one graph from normalised pixels (N x 3 x H x W, any N) to the
  probabilities of the head, the text scores and their ensemble, with the class-description
  embeddings baked in; preprocessing.json (size, mean, std, resize mode) and clipcls_graph.json
  (class names) beside it. Checked with onnx.checker and against PyTorch through onnxruntime
  (max probability difference <= 1e-4) before it is kept. Needs pip install 'clipcls[deploy]'.
--format openvino: the same graph converted with openvino.convert_model (model.xml/.bin, fp32).

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls export MODEL --out DIR [--format F] [--wise-alpha A]`; returns the exit status."""
    return run_command(build_parser(), export, argv)


def export(args: argparse.Namespace) -> int:
    """Load, optionally interpolate (WiSE-FT), and write the export."""
    from clipcls.export.huggingface import export_model
    from clipcls.export.replace import check_replaceable
    from clipcls.inference.trained_model import load_trained
    from clipcls.model.wise import check_alpha

    check_replaceable(args.out, Path(args.model), args.overwrite)  # before the (slow) model load
    if args.wise_alpha is not None:
        check_alpha(args.wise_alpha)
    if args.format != "hf":
        from clipcls.optional import require

        for module in ("onnx", "onnxscript", "onnxruntime") + (("openvino",) if args.format == "openvino" else ()):
            require(module, f"--format {args.format}")  # before the slow model load
    model = load_trained(args.model)
    if args.wise_alpha is not None:
        model = model.interpolated(args.wise_alpha)
    parity = ""
    if args.format == "hf":
        export_model(model, args.out, overwrite=args.overwrite)
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
