"""Samplers and the logit-adjusted loss on an imbalanced subset of the real NEU steel-defect photos.

Each seed draws its own subset of ../shared/data/neu-surface-defects (symlinks in a temporary
folder, nothing copied): the six classes get 240/120/60/30/15/8 training images (which class gets
which count is drawn too) and every class the same number of validation images, all that the
largest class leaves (54 here): a balanced validation set, so macro F1 weighs the rare classes as
much as the common ones. Every row trains the built-in tiny CLIP from scratch with the settings
of `neu_from_scratch.py` for the same number of epochs (the same images seen), with one compute
thread and no loader worker; `--jobs 2` runs two at once on two cores. The logit-adjusted row
shuffles (sampler random), as that loss assumes. Rare-class F1 is the mean F1 of the two
smallest training classes.

    python benchmarks/neu_imbalance.py [--seeds 3] [--epochs 60] [--jobs 2] [--rows 'sampler random,...']
        [--out benchmarks/neu_imbalance.json]

Runs the same code as `python train.py`; nothing is tuned per row: each row changes only what
its name says.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import cfg_flags, machine  # noqa: E402
from neu_from_scratch import SETTINGS  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
COUNTS = (240, 120, 60, 30, 15, 8)
ROWS: dict[str, dict] = {
    "sampler random": {"sampler": "random"},
    "sampler balanced": {"sampler": "balanced"},  # the default
    "sampler per_class": {"sampler": "per_class"},
    "logit-adjusted tau 1": {"sampler": "random", "logit_adjustment": 1.0},  # Menon et al. 2021
}


def make_subset(data: Path, counts: tuple[int, ...], seed: int, dest: Path) -> tuple[dict[str, int], int]:
    """Symlink a seeded imbalanced train split and a balanced validation split of `data` into
    `dest`/train and `dest`/val; returns the training count of every class and the validation
    count per class."""
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    if len(classes) != len(counts):
        raise SystemExit(f"{data} has {len(classes)} classes, --counts gives {len(counts)}")
    rng = np.random.default_rng(seed)
    files = {c: sorted(p for p in (data / c).iterdir() if p.is_file()) for c in classes}
    per_val = min(len(f) for f in files.values()) - max(counts)
    if per_val < 1:
        raise SystemExit(f"{data}: the smallest class has too few images for {max(counts)} training images")
    assigned = dict(zip(classes, rng.permutation(counts).tolist()))
    for name in classes:
        order = rng.permutation(len(files[name]))
        picked = {"val": order[:per_val], "train": order[per_val : per_val + assigned[name]]}
        for split, positions in picked.items():
            folder = dest / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in positions:
                (folder / files[name][i].name).symlink_to(files[name][i].resolve())
    return assigned, per_val


def run_one(job: dict) -> dict:
    """Train one (row, seed) in this process with one thread; the run's metrics.json, abridged."""
    import torch

    torch.set_num_threads(1)
    from cfg import CFG
    from clipcls.commands.train import main as train_main

    started = time.perf_counter()
    if train_main(cfg_flags(job["cfg"]), CFG) != 0:
        raise RuntimeError(f"row {job['row']!r} seed {job['seed']} failed")
    seconds = time.perf_counter() - started
    run_dir = Path(job["cfg"]["output_dir"]) / job["cfg"]["run_name"]
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    per_class = {name: m["f1"] for name, m in metrics["per_class"].items()}
    rare = sorted(job["counts"], key=job["counts"].get)[:2]
    return {
        "row": job["row"],
        "seed": job["seed"],
        "macro_f1": metrics["macro_f1"],
        "rare_f1": statistics.mean(per_class[c] for c in rare),
        "per_class_f1": per_class,
        "train_counts": job["counts"],
        "epochs_trained": metrics["epochs_trained"],
        "seconds": seconds,
    }


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "neu-surface-defects")
    parser.add_argument("--descriptions", type=Path, default=SHARED / "neu-surface-defects.yaml")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)), help="training images per class")
    parser.add_argument("--seeds", type=int, default=3, help="subsets and training seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=60, help="the same for every row")
    parser.add_argument("--minutes", type=float, default=6.0, help="a run's time cap (a guard, not the budget)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one core each")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of the rows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "neu_imbalance.json")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {list(ROWS)}")
    counts = tuple(int(c) for c in args.counts.split(","))
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned runs
    from cfg import CFG

    work = Path(tempfile.mkdtemp(prefix="neu-imbalance-"))
    jobs = []
    for seed in range(args.seeds):
        subset = work / f"subset-{seed}"
        assigned, per_val = make_subset(args.data, counts, seed, subset)
        print(f"seed {seed}: train {assigned}, {per_val} validation images per class", flush=True)
        for row in rows:
            cfg = {
                **dataclasses.asdict(CFG()),
                **SETTINGS,
                "train_dataset_dir": str(subset / "train"),
                "val_dataset_dir": str(subset / "val"),
                "class_description_yaml_file": str(args.descriptions),
                "output_dir": str(work / "runs"),
                "run_name": f"{row.replace(' ', '_')}-{seed}",
                "epochs": args.epochs,
                "max_minutes": args.minutes,
                "num_workers": 0,
                "checkpoint_every_n_steps": None,
                "loggers": ["csv"],
                "seed": seed,
                **ROWS[row],
            }
            jobs.append({"row": row, "seed": seed, "cfg": cfg, "counts": assigned})
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()), flush=True)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        results = []
        for result in pool.map(run_one, jobs):
            results.append(result)
            print(
                f"{result['row']} seed {result['seed']}: macro F1 {result['macro_f1']:.3f}, rare F1 "
                f"{result['rare_f1']:.3f}, {result['epochs_trained']} epochs, {result['seconds']:.0f} s",
                flush=True,
            )
    print(f"\n{len(jobs)} runs in {time.perf_counter() - started:.0f} s, {args.jobs} at a time")
    print("\n| row | val macro F1 | rare-class F1 | epochs | train s |\n|---|---|---|---|---|")
    for row in rows:
        res = [r for r in results if r["row"] == row]
        epochs, seconds = (statistics.mean(r[k] for r in res) for k in ("epochs_trained", "seconds"))
        f1s = (mean_std([r[k] for r in res]) for k in ("macro_f1", "rare_f1"))
        print(f"| {row} | {' | '.join(f1s)} | {epochs:.0f} | {seconds:.0f} |")
    args.out.write_text(
        json.dumps({"counts": counts, "epochs": args.epochs, "seeds": args.seeds, "runs": results}, indent=1),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
