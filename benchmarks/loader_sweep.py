"""Which DataLoader worker count and intra-op thread count make the CPU pipeline fastest?

Runs the real training pipeline (as train_throughput.py's pipeline contender) once per
configuration `workers x threads`, alternating the configurations round by round, and prints the
median images/s of each. On a CPU-only machine the main process's OpenMP threads and the loader
workers share the same cores; when they oversubscribe them, OpenMP threads that wait for each
other at every parallel region are descheduled and a step can slow down far more than the
loading work itself costs.

    python benchmarks/loader_sweep.py --model tiny --configs 0x2,1x2,2x2,1x1
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import common
import torch
from train_throughput import make_setup, run_pipeline

from clipcls.data.splits import load_splits as prepare_data
from clipcls.training.module import build_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "vitb32"], default="tiny")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--measure", type=int, default=6)
    parser.add_argument("--configs", default="0x2,1x2,2x2,1x1", help="comma-separated WORKERSxTHREADS")
    args = parser.parse_args(argv)
    args.workers = None
    common.print_machine()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        setup = make_setup(args, Path(tmp))
        setup.cfg["batch_size"] = args.batch
        data = prepare_data(setup.cfg)
        module = build_module(setup.cfg, data.class_names, data.descriptions)
        rounds = []
        for r in range(args.rounds):
            results = {}
            for workers, threads in configs if r % 2 == 0 else configs[::-1]:
                name = f"workers={workers} threads={threads}"
                setup.cfg["num_workers"] = workers
                torch.set_num_threads(threads)
                os.environ["OMP_NUM_THREADS"] = str(threads)  # the pipeline then keeps this count
                results[name], _ = run_pipeline(setup, module, data, "random", args.warmup, args.measure, "sweep", r)
                print(
                    f"round {r} {name}: {results[name].images_per_s:.2f} images/s (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            rounds.append({f"workers={w} threads={t}": results[f"workers={w} threads={t}"] for w, t in configs})
        print(f"\nmodel {args.model} at {args.size}px, batch {args.batch}, {args.rounds} rounds x {args.measure} steps")
        print(common.summarise(rounds, []))
    common.print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
