"""The `clipcls` command (also `python -m clipcls`): evaluate, zeroshot, predict, export, demo-data.

Each subcommand's module is imported only when it runs, so `clipcls --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "evaluate": ("clipcls.evaluate", "score a checkpoint, run directory or export on a labelled folder"),
    "zeroshot": ("clipcls.zeroshot", "score un-fine-tuned CLIP using only the class descriptions"),
    "predict": ("clipcls.predict", "predict classes for files, a folder or a glob; write a CSV"),
    "export": ("clipcls.export", "write a self-contained HuggingFace-format model directory"),
    "demo-data": ("clipcls.data.demo", "generate the built-in wallpaper-defect demo data set"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to `<module>.main(rest_of_argv)`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="clipcls", description="Fine-tuned CLIP classifiers: use and ship them.")
    parser.add_argument("command", choices=SUBCOMMANDS, metavar="command",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in SUBCOMMANDS.items()))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command (see clipcls COMMAND --help)")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    parsed = parser.parse_args(argv[:1])
    module = importlib.import_module(SUBCOMMANDS[parsed.command][0])
    return int(module.main(argv[1:]) or 0)
