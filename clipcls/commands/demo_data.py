"""`clipcls demo-data`: generate the built-in wallpaper-defect demo set."""

from __future__ import annotations

import argparse

from clipcls.commands.common import run_command


def main(argv: list[str] | None = None) -> int:
    """`clipcls demo-data --out demo_data [--seed 0] [--scale 1.0]`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="clipcls demo-data",
        description="Generate the procedural wallpaper-defect demo set.",
    )
    parser.add_argument("--out", default="demo_data", help="folder to write the class folders into")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every class count (min 2)")
    return run_command(parser, write, argv)


def write(args: argparse.Namespace) -> int:
    """Generate (or reuse) the set and print a one-line summary."""
    from clipcls.data.demo import make_demo_dataset, scaled_counts

    root = make_demo_dataset(args.out, seed=args.seed, scale=args.scale)
    counts = scaled_counts(args.scale)
    summary = ", ".join(f"{name}={n}" for name, n in counts.items())
    print(f"{sum(counts.values())} images in {root}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
