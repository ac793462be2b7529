"""`clipcls demo-data`: generate the built-in demo task — the world's ten wallpaper-defect classes,
held out from `mini`'s pretraining, five of them concepts it never saw (clipcls/world/task.py):
train/ (25:1 imbalance, the subtle classes rarest), val/ (checkpoint choice), test/ (the reported
split) and shifted/ (the test scenes through a blurred, colour-cast camera)."""

from __future__ import annotations

import argparse

from clipcls.commands.common import run_command


def main(argv: list[str] | None = None) -> int:
    """`clipcls demo-data --out demo_data [--seed 0]`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="clipcls demo-data",
        description="Generate the demo task: train/, val/, test/ and shifted/ class folders of procedural "
        "wallpaper-defect photos (a finished set with the same seed is reused).",
    )
    parser.add_argument("--out", default="demo_data", help="folder to write train/, val/, test/ and shifted/ into")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same pictures")
    return run_command(parser, write, argv)


def write(args: argparse.Namespace) -> int:
    """Generate (or reuse) the task and print what each split holds."""
    from clipcls.world.task import SPLIT_COUNTS, make_task

    root = make_task(args.out, args.seed)
    for split, counts in SPLIT_COUNTS.items():
        summary = ", ".join(f"{name}={n}" for name, n in counts.items())
        print(f"{split}: {sum(counts.values())} images in {root / split}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
