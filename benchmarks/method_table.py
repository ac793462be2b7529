"""The method table: what each training choice does on the held-out wallpaper task, from `mini`.

Every row fine-tunes the pretrained miniature CLIP (`mini`) on the world's wallpaper-defect task
(clipcls/world/task.py: 30:1 imbalance, `seam_gap` has 8 training images) with one change from the
default configuration, over several seeds, and reports mean ± std of macro F1 on the validation
split, on the shifted split (other materials, colours, light) and on the rare classes alone (the
two smallest training classes, validation split), each for the checkpoint best on validation and
for the last epoch's (last.ckpt: not chosen on the split it is scored on). WiSE-FT rows
interpolate the default rows' checkpoints; zero-shot trains nothing. Time-to-0.9: wall time until a run's validation macro F1
first reached 0.9 x the best row's mean (training time x epoch fraction; the run's own timing).

    python benchmarks/method_table.py [--seeds 3] [--epochs 8] [--rows default,zero-shot,...]
        [--lr 1e-5] [--set head_lr_multiplier=1000] [--out benchmarks/method_table.json]

Runs the same code as `python train.py` (in-process, one thread: side by side on a shared
machine). Nothing here is tuned to the answer: the default row is cfg.py's values with only the
task-specific settings below (data, model, input size, epochs). `--lr` and `--set key=value` change
a value for every row (the seed recipe keeps its own lr), to see how a finding depends on it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from common import cfg_flags  # noqa: E402

from cfg import CFG  # noqa: E402
from clipcls.commands.train import main as train_main  # noqa: E402

SEED_TEMPERATURE = 1.072508
DESCRIPTIONS = ROOT / "info" / "mini_task_descriptions.yaml"
SHUFFLED = ROOT / "info" / "mini_task_descriptions_shuffled.yaml"
# What the task fixes for every row: the data, the model, its input size, the length of a run.
# The learning rate is cfg.py's (1e-5): at 3e-4, sized for the first, weaker `mini`, every row that
# trains the image tower fell below zero-shot on validation and shifted (RESULTS.md).
TASK = {
    "model_name": "mini",
    "img_transform_size_W": 64,
    "img_transform_size_H": 64,
    "num_workers": 0,
    "accelerator": "cpu",
    "devices": 1,
    "checkpoint_every_n_steps": None,
    "log_every_n_steps": 5,
}
# Row -> the change from the default configuration (None: not a training row).
ROWS: dict[str, dict | None] = {
    "zero-shot": None,
    "linear probe": {"freeze_image": True, "sim_weight": 0.0, "fc_weight": 1.0},
    "cross-entropy only": {"sim_weight": 0.0, "fc_weight": 1.0},
    "contrastive only": {"sim_weight": 1.0, "fc_weight": 0.0},
    "default": {},
    "sampler per_class": {"sampler": "per_class"},
    "sampler balanced": {"sampler": "balanced"},
    "sampler random": {"sampler": "random"},
    "WiSE-FT 0.25": None,
    "WiSE-FT 0.5": None,
    "WiSE-FT 0.75": None,
    "shuffled descriptions": {"class_description_yaml_file": str(SHUFFLED)},
    "head_lr_multiplier 10": {"head_lr_multiplier": 10.0},
    "head_lr_multiplier 1": {"head_lr_multiplier": 1.0},
    "head_lr_multiplier 1000": {"head_lr_multiplier": 1000.0},
    "logit-adjusted (sampler random)": {"sampler": "random", "logit_adjustment": 1.0},
    "seed recipe": {"sampler": "per_class", "temperature": SEED_TEMPERATURE, "lr": 1e-6},
}
TIMED = ("default", "seed recipe")


def base_config(task_dir: Path, out_dir: Path, epochs: int) -> dict:
    cfg = dataclasses.asdict(CFG())
    cfg.update(TASK)
    cfg.update(
        train_dataset_dir=str(task_dir / "train"),
        val_dataset_dir=str(task_dir / "val"),
        class_description_yaml_file=str(DESCRIPTIONS),
        output_dir=str(out_dir),
        epochs=epochs,
    )
    return cfg


def train_row(cfg: dict, change: dict, seed: int, name: str) -> tuple[Path, float]:
    """Train one (row, seed); returns the run directory and the training wall time."""
    run = {**cfg, **change, "seed": seed, "run_name": f"{name.replace(' ', '_')}-{seed}"}
    started = time.perf_counter()
    if train_main(cfg_flags(run), CFG) != 0:
        raise RuntimeError(f"row {name!r} seed {seed} failed")
    return Path(run["output_dir"]) / run["run_name"], time.perf_counter() - started


def score(model, sets: dict, rare: list[int]) -> dict[str, float]:
    """Macro F1 of the head on each set, and on the rare classes of the validation set."""
    from sklearn.metrics import f1_score

    from clipcls.evaluation.evaluation import eval_loader
    from clipcls.inference.scoring import run_inference

    out = {}
    for name, index in sets.items():
        loader = eval_loader(index, model.image_size, model.image_mean, model.image_std, 64, 0, "cpu")
        res = run_inference(model.classifier, loader, "cpu")
        preds, targets = res["head_logits"].argmax(1), res["targets"].astype(int)
        labels = list(range(len(model.class_names)))
        out[name] = float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0))
        if name == "val":
            out["rare"] = float(f1_score(targets, preds, labels=rare, average="macro", zero_division=0))
    return out


def zero_shot(cfg: dict, sets: dict, rare: list[int]) -> dict[str, float]:
    """The base model through its descriptions alone (its zero-shot head), no training."""
    from clipcls.data.descriptions import read_descriptions
    from clipcls.inference.trained_model import TrainedModel
    from clipcls.model.classifier import build_classifier

    names = sets["val"].class_names
    descriptions = read_descriptions(cfg["class_description_yaml_file"])
    descriptions = {n: descriptions[n] for n in names}
    net = build_classifier(cfg, names, descriptions).eval()
    size = (cfg["img_transform_size_H"], cfg["img_transform_size_W"])
    model = TrainedModel(net, names, descriptions, size, net.image_mean, net.image_std, dict(cfg))
    return score(model, sets, rare)


def val_curve(run_dir: Path) -> list[float]:
    """Validation macro F1 after each epoch, from the run's CSV log."""
    with open(run_dir / "logs" / "metrics.csv", encoding="utf-8") as stream:
        return [float(r["val/macro_f1"]) for r in csv.DictReader(stream) if r.get("val/macro_f1")]


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of the rows")
    parser.add_argument("--lr", type=float, default=CFG.lr, help="base learning rate of every row but the seed's")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change cfg.py's value for every row (YAML)"
    )
    parser.add_argument("--task", type=Path, default=None, help="task folder (default: generated in a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "method_table.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from clipcls.data.index import index_folder
    from clipcls.inference.trained_model import load_trained
    from clipcls.world.task import make_task

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {list(ROWS)}")
    work = Path(tempfile.mkdtemp(prefix="method-table-"))
    task_dir = make_task(args.task or work / "task", seed=0)
    cfg = {**base_config(task_dir, work / "runs", args.epochs), "lr": args.lr}
    for item in args.set:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    train_index = index_folder(task_dir / "train")
    counts = train_index.counts()
    rare = sorted(range(len(counts)), key=lambda c: counts[c])[:2]
    sets = {name: index_folder(task_dir / name, class_names=train_index.class_names) for name in ("val", "shifted")}
    print(
        f"task {task_dir}: train counts {dict(zip(train_index.class_names, counts.tolist()))}; rare = "
        f"{[train_index.class_names[c] for c in rare]}; {args.seeds} seeds, {args.epochs} epochs",
        flush=True,
    )

    results: dict[str, list[dict]] = {}
    runs: dict[str, list[tuple[Path, float]]] = {}
    if "zero-shot" in rows:
        results["zero-shot"] = [zero_shot(cfg, sets, rare)]
    for name in rows:
        change = ROWS[name]
        if change is None:
            continue
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run_dir, seconds = train_row(cfg, change, seed, name)
            runs.setdefault(name, []).append((run_dir, seconds))
            scores = score(load_trained(run_dir), sets, rare)
            last = score(load_trained(run_dir / "checkpoints" / "last.ckpt"), sets, rare)
            scores.update({f"{k}_last": v for k, v in last.items()})
            results.setdefault(name, []).append({**scores, "seconds": seconds, "val_curve": val_curve(run_dir)})
            print(f"{name} seed {seed}: {results[name][-1]}", flush=True)
    for name in rows:
        if name.startswith("WiSE-FT") and "default" in runs:
            alpha = float(name.split()[1])
            results[name] = []
            for run_dir, _ in runs["default"]:
                scores = score(load_trained(run_dir).interpolated(alpha), sets, rare)
                last = score(load_trained(run_dir / "checkpoints" / "last.ckpt").interpolated(alpha), sets, rare)
                results[name].append({**scores, **{f"{k}_last": v for k, v in last.items()}})

    best = max(statistics.mean(r["val"] for r in res) for res in results.values())
    timing = {}
    for name in TIMED:
        for run_dir, seconds in runs.get(name, []):
            curve = val_curve(run_dir)
            reached = next((i + 1 for i, f1 in enumerate(curve) if f1 >= 0.9 * best), None)
            timing.setdefault(name, []).append(None if reached is None else seconds * reached / len(curve))
    print(
        "\n| row | val macro F1 | shifted macro F1 | rare-class F1 | last epoch: val | shifted | rare | train s |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for name, res in results.items():
        secs = [r["seconds"] for r in res if "seconds" in r]
        keys = ("val", "shifted", "rare", "val_last", "shifted_last", "rare_last")
        # zero-shot trains nothing: its last epoch is its only state
        cells = [mean_std([r.get(k, r[k.removesuffix("_last")]) for r in res]) for k in keys]
        print(
            f"| {name} | {' | '.join(cells)} | {statistics.mean(secs):.0f} |"
            if secs
            else f"| {name} | {' | '.join(cells)} | - |"
        )
    for name, times in timing.items():
        shown = ", ".join("never" if t is None else f"{t:.0f} s" for t in times)
        print(f"time to 0.9 x best val macro F1 ({0.9 * best:.3f}), {name}: {shown}")
    args.out.write_text(
        json.dumps(
            {"rows": results, "time_to_0.9": timing, "best": best, "epochs": args.epochs, "seeds": args.seeds}, indent=1
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
