"""`clipcls export`: write a trained model as a self-contained HuggingFace-format directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipcls.commands.common import run_command

EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an earlier export.

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
    parser.add_argument(
        "--wise-alpha",
        type=float,
        default=None,
        help="export (1-A)*initial + A*fine-tuned weights (0 = original model, 1 = fine-tune)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls export MODEL --out DIR [--wise-alpha A]`; returns the exit status."""
    return run_command(build_parser(), export, argv)


def export(args: argparse.Namespace) -> int:
    """Load, optionally interpolate (WiSE-FT), and write the export."""
    from clipcls.export.huggingface import ExportError, export_model
    from clipcls.inference.trained_model import load_trained
    from clipcls.model.wise import check_alpha

    if args.out.exists() and not args.overwrite:  # fail before the (slow) model load
        raise ExportError(f"{args.out} already exists; pass --overwrite to replace it")
    if args.wise_alpha is not None:
        check_alpha(args.wise_alpha)
    model = load_trained(args.model)
    if args.wise_alpha is not None:
        model = model.interpolated(args.wise_alpha)
    out = export_model(model, args.out, overwrite=args.overwrite)
    alpha = "" if model.wise_alpha is None else f" (WiSE-FT alpha {model.wise_alpha:g})"
    print(f"exported {len(model.class_names)} classes{alpha} to {out}", file=sys.stderr)
    return 0
