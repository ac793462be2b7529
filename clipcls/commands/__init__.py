"""The `clipcls` command (also `python -m clipcls`): train, evaluate, zeroshot, predict, audit, export, serve,
demo-data.

Commands parse arguments, print and return exit statuses; the work they share lives in the
library (clipcls.data, .model, .training, .inference, .evaluation, .export). Each command's
module is imported only when it runs, and none imports torch before its arguments are parsed, so
every `clipcls COMMAND --help` answers fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": ("clipcls.commands.train", "fine-tune a CLIP classifier (same flags as python train.py)"),
    "evaluate": ("clipcls.commands.evaluate", "score a checkpoint, run directory or export on a labelled folder"),
    "zeroshot": ("clipcls.commands.zeroshot", "score un-fine-tuned CLIP using only the class descriptions"),
    "predict": ("clipcls.commands.predict", "predict classes for files, a folder or a glob; write a CSV"),
    "audit": ("clipcls.commands.audit", "find label errors, duplicates, leakage, bad files and weak descriptions"),
    "compare": ("clipcls.commands.compare", "zero-shot CLIP vs the fine-tune on one or more labelled folders"),
    "export": ("clipcls.commands.export", "write a model as a HuggingFace directory, or an ONNX / OpenVINO graph"),
    "serve": ("clipcls.commands.serve", "serve a model over HTTP: POST /predict, GET /health"),
    "demo-data": ("clipcls.commands.demo_data", "generate the built-in wallpaper-defect demo data set"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to `<command module>.main(rest_of_argv)`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="clipcls", description="Fine-tuned CLIP classifiers: train, use and ship them."
    )
    parser.add_argument(
        "command",
        choices=COMMANDS,
        metavar="command",
        help="; ".join(f"{name}: {text}" for name, (_, text) in COMMANDS.items()),
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command (see clipcls COMMAND --help)")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    parsed = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[parsed.command][0])
    return int(module.main(argv[1:]) or 0)
