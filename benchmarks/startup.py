"""Start-up: wall time of `clipcls --help` and `python train.py --help`, alternated, median of N.

Both only print help, so they should import nothing heavy: each subcommand's module (and torch,
Lightning, transformers) is imported only when it runs.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

COMMANDS = {
    "clipcls --help": [str(Path(sys.executable).with_name("clipcls")), "--help"],
    "python train.py --help": [sys.executable, "train.py", "--help"],
    "clipcls predict --help": [str(Path(sys.executable).with_name("clipcls")), "predict", "--help"],
    "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=common.ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    common.print_machine()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # one untimed run each: cold file caches are not start-up
        wall_time(command)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    for name, values in times.items():
        print(f"  {name:<36} median {statistics.median(values):.3f} s  (runs: {', '.join(f'{v:.3f}' for v in values)})")
    common.print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
