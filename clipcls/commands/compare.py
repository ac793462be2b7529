"""`clipcls compare`: zero-shot CLIP against the fine-tuned model on one or more labelled folders
(default: the run's validation split), printed as one table and written as compare.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipcls.commands.common import add_loader_args, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipcls compare",
        description="Score the run's base model zero-shot (its descriptions only) and the fine-tune "
        "(head, text, ensemble) on labelled class folders, side by side.",
    )
    parser.add_argument("model", help="a run directory, a .ckpt file or an export directory")
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="NAME=DIR",
        default=[],
        help="labelled class folders to score, each named (default: the run's validation split as 'val')",
    )
    parser.add_argument("--out", type=Path, help="where to write compare.json (default: <run dir>/compare.json)")
    add_loader_args(parser)
    return parser


def parse_sets(specs: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs in order; a bare DIR is named after its folder."""
    from clipcls.errors import ClipclsError

    sets: dict[str, Path] = {}
    for spec in specs:
        name, _, folder = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        if not name or name in sets:
            raise ClipclsError(f"--data {spec!r}: each set needs a distinct NAME=DIR")
        sets[name] = Path(folder)
    return sets


def compare_command(args: argparse.Namespace) -> int:
    from clipcls.data.index import index_folder
    from clipcls.evaluation.comparison import compare, format_comparison
    from clipcls.evaluation.evaluation import run_dir_of, validation_index
    from clipcls.inference.scoring import pick_device
    from clipcls.inference.trained_model import load_trained
    from clipcls.io import write_json
    from clipcls.output_guard import check_output

    folders = parse_sets(args.data)  # before the (slow) model load
    if args.out:
        check_output(args.out, args.model, input_folders=folders.values())
    model = load_trained(args.model)
    run_dir = run_dir_of(Path(args.model))
    if folders:
        sets = {name: index_folder(folder, class_names=model.class_names) for name, folder in folders.items()}
    else:
        sets = {"val": validation_index(model, run_dir)[0]}
    results = compare(model, sets, args.batch_size, args.workers, pick_device(args.device))
    out = args.out or ((run_dir or Path(".")) / "compare.json")
    write_json({"model": str(model.source), "sets": {k: str(v) for k, v in folders.items()}, **results}, out)
    print(format_comparison(results))
    print(f"\n(zero-shot: the base model {model.config.get('model_name')!r} with the descriptions only; {out})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`clipcls compare MODEL [--data NAME=DIR ...]`; returns the exit status."""
    return run_command(build_parser(), compare_command, argv)
