"""The method table: what each training choice does on the held-out ten-class task, from `mini`.

Every row fine-tunes the pretrained miniature CLIP (`mini`) on the world's wallpaper-defect task
(clipcls/world/task.py: five common classes `mini` saw on other materials, five subtle ones it
never saw, which are also the rare ones) with one change from the default configuration. Each row
runs for every (task seed, training seed) pair and is scored on `test` (100 images a class) and
`shifted` (the test scenes through another camera) only: `val` chose nothing but the best-on-val
checkpoint, and the table reports the LAST epoch (chosen by nothing) with the best-on-val one
beside it. Columns: macro F1 on test, on shifted, and over the five subtle classes on test.
Paired differences (default against cross-entropy only, zero-shot and class-name prompts) are
taken run by run over the same (task seed, training seed) pairs, with a bootstrap 95% interval.
Few-shot columns retrain the paired rows with the subtle classes cut to 4, 8 or 16 images.

    python benchmarks/method_table.py [--train-seeds 5] [--task-seeds 0,1] [--epochs 8]
        [--rows default,cross-entropy only,...] [--shots 4,8,16] [--jobs 2] [--set key=value]

Runs the same code as `python train.py` (in-process, one thread a job, `--jobs` side by side).
Nothing here is tuned to the answer: the default row is cfg.py's values with only the task's
settings below (data, model, input size, epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from common import cfg_flags  # noqa: E402

from cfg import CFG  # noqa: E402

SEED_TEMPERATURE = 1.072508
DESCRIPTIONS = ROOT / "info" / "mini_task_descriptions.yaml"
SHUFFLED = ROOT / "info" / "mini_task_descriptions_shuffled.yaml"
CLASS_NAMES = "class names"  # marks the rows whose descriptions are "a photo of {class}"
# What the task fixes for every row: the data, the model, its input size, the length of a run, and
# mini's learning rates. cfg.py's lr (1e-5, FLYP's for ViT-B) leaves mini's tower where it was
# (default at lr 1e-5: test 0.347 = zero-shot); 3e-4 (tower) with the head at ~1e-2 was chosen on
# val among 1e-4 and 3e-4 (RESULTS.md, issue 18).
TASK = {
    "model_name": "mini",
    "lr": 3e-4,
    "head_lr_multiplier": 30.0,
    "img_transform_size_W": 64,
    "img_transform_size_H": 64,
    "num_workers": 0,
    "accelerator": "cpu",
    "devices": 1,
    "checkpoint_every_n_steps": None,
    "log_every_n_steps": 5,
    "loggers": ["csv"],
}
# Row -> the change from the default configuration (None: no training, the base model zero-shot).
ROWS: dict[str, dict | None] = {
    "zero-shot": None,
    "zero-shot (class names)": None,
    "default": {},
    "class-name prompts": {"class_description_yaml_file": CLASS_NAMES},
    "shuffled descriptions": {"class_description_yaml_file": str(SHUFFLED)},
    "random-init head": {"head_init": "random"},
    "linear probe": {"freeze_image": True, "sim_weight": 0.0, "fc_weight": 1.0},
    "cross-entropy only": {"sim_weight": 0.0, "fc_weight": 1.0},
    "contrastive only": {"sim_weight": 1.0, "fc_weight": 0.0},
    "FLYP (text tower trains, contrastive only)": {"freeze_text": False, "sim_weight": 1.0, "fc_weight": 0.0},
    "LP-FT (2 head-only epochs)": {"lp_epochs": 2},
    "layer-wise lr decay 0.7": {"layer_decay": 0.7},
    "L2-SP 1.0": {"l2sp_weight": 1.0},
    "augment trivialaugment": {"augment": "trivialaugment"},
    "augment flip": {"augment": "flip"},
    "L2-SP 0.1": {"l2sp_weight": 0.1},
    "WiSE-FT 0.5 (wise_alpha)": {"wise_alpha": 0.5},
    "head_lr_multiplier 1000": {"head_lr_multiplier": 1000.0},
    "augment none": {"augment": "none"},
    "seed recipe": {"sampler": "per_class", "temperature": SEED_TEMPERATURE, "lr": 1e-6, "augment": "trivialaugment"},
}
WISE_ALPHAS = (0.5,)  # WiSE-FT rows: the default runs' weights mixed with the base model's
PAIRED = ("cross-entropy only", "zero-shot", "class-name prompts")  # each against the default
SHOT_ROWS = ("default", "cross-entropy only", "class-name prompts")


def task_folder(work: Path, task_seed: int, shots: int | None) -> Path:
    """The task of `task_seed`, with the subtle classes cut to `shots` training images if given."""
    from clipcls.world.task import SUBTLE_CLASSES, TRAIN_COUNTS, make_task

    counts = None if shots is None else {**TRAIN_COUNTS, **dict.fromkeys(SUBTLE_CLASSES, shots)}
    name = f"task{task_seed}" + ("" if shots is None else f"-{shots}shot")
    return make_task(work / name, seed=task_seed, train_counts=counts)


def class_name_prompts(work: Path) -> Path:
    """`a photo of {class}` for every class, the prompt a user without descriptions would write."""
    from clipcls.world.task import TASK_KINDS

    path = work / "class_name_prompts.yaml"
    path.write_text(yaml.safe_dump({n: [f"a photo of {n.replace('_', ' ')}"] for n in TASK_KINDS}))
    return path


def score(model, sets: dict, scorer: str) -> dict[str, float]:
    """Macro F1 of `scorer` on each set, and over the subtle classes on test."""
    from sklearn.metrics import f1_score

    from clipcls.evaluation.evaluation import eval_loader
    from clipcls.inference.scoring import run_inference
    from clipcls.world.task import SUBTLE_CLASSES

    out = {}
    labels = list(range(len(model.class_names)))
    subtle = [model.class_names.index(n) for n in SUBTLE_CLASSES]
    for name, index in sets.items():
        resize = model.config.get("resize", "squash")
        loader = eval_loader(index, model.image_size, model.image_mean, model.image_std, 100, 0, "cpu", resize)
        res = run_inference(model.classifier, loader, "cpu")
        preds, targets = res[f"{scorer}_logits"].argmax(1), res["targets"].astype(int)
        out[name] = float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0))
        if name == "test":
            out["subtle"] = float(f1_score(targets, preds, labels=subtle, average="macro", zero_division=0))
    return out


def eval_sets(task_dir: Path) -> dict:
    from clipcls.data.index import index_folder

    names = index_folder(task_dir / "train").class_names
    return {s: index_folder(task_dir / s, class_names=names) for s in ("test", "shifted")}


def zero_shot(cfg: dict, sets: dict) -> dict[str, float]:
    """The base model through its descriptions alone (text scorer), no training."""
    from clipcls.data.descriptions import read_descriptions
    from clipcls.inference.trained_model import TrainedModel
    from clipcls.model.classifier import build_classifier

    names = sets["test"].class_names
    descriptions = read_descriptions(cfg["class_description_yaml_file"])
    descriptions = {n: descriptions[n] for n in names}
    net = build_classifier(cfg, names, descriptions).eval()
    size = (cfg["img_transform_size_H"], cfg["img_transform_size_W"])
    return score(TrainedModel(net, names, descriptions, size, net.image_mean, net.image_std, dict(cfg)), sets, "text")


def run_job(job: dict) -> dict:
    """Train one (row, task seed, training seed, shots) and score it; runs in a worker process."""
    import torch

    torch.set_num_threads(1)
    from clipcls.commands.train import main as train_main
    from clipcls.inference.scoring import default_scorer
    from clipcls.inference.trained_model import load_trained

    cfg, name = job["cfg"], job["row"]
    task_dir = task_folder(Path(job["work"]), job["task_seed"], job["shots"])
    sets = eval_sets(task_dir)
    run = {**cfg, "train_dataset_dir": str(task_dir / "train"), "val_dataset_dir": str(task_dir / "val")}
    if ROWS[name] is None:
        return {**job, "scores": zero_shot(run, sets), "seconds": 0.0}
    # the class-name rows' prompt file was written by jobs_for into the job's cfg
    run.update({k: v for k, v in ROWS[name].items() if v != CLASS_NAMES})
    run.update(seed=job["train_seed"], run_name=job["run_name"])
    run_dir = Path(run["output_dir"]) / run["run_name"]
    timing = run_dir / "train_seconds.txt"
    if not timing.is_file():  # a finished run (a table resumed in the same --work) is scored, not retrained
        started = time.perf_counter()
        if train_main(cfg_flags(run), CFG) != 0:
            raise RuntimeError(f"row {name!r} job {job['run_name']} failed")
        timing.write_text(f"{time.perf_counter() - started:.1f}\n")
    seconds = float(timing.read_text())
    scorer = default_scorer(run)  # the scorer the run itself predicts with (text where no head trained)
    last = load_trained(run_dir / "checkpoints" / "last.ckpt")
    scores = score(last, sets, scorer)
    scores.update({f"{k}_best_on_val": v for k, v in score(load_trained(run_dir), sets, scorer).items()})
    extra = {}
    if name == "default" and job["shots"] is None:
        for alpha in WISE_ALPHAS:
            extra[f"WiSE-FT {alpha}"] = score(last.interpolated(alpha), sets, scorer)
    return {**job, "scores": scores, "seconds": seconds, "scorer": scorer, "extra": extra}


def jobs_for(args, cfg: dict, work: Path) -> list[dict]:
    jobs = []
    for task_seed in args.task_seeds:
        for shots in ([] if args.only_shots else [None]) + args.shots:
            rows = args.rows if shots is None else [r for r in SHOT_ROWS if r in args.rows]
            for name in rows:
                row_cfg = dict(cfg)
                if (ROWS[name] or {}).get("class_description_yaml_file") == CLASS_NAMES or name.endswith(
                    "(class names)"
                ):
                    row_cfg["class_description_yaml_file"] = str(class_name_prompts(work))
                seeds = [0] if ROWS[name] is None else range(args.first_seed, args.first_seed + args.train_seeds)
                for seed in seeds:
                    tag = f"{name.replace(' ', '_')}-t{task_seed}-s{seed}" + (f"-{shots}shot" if shots else "")
                    jobs.append(
                        {"row": name, "task_seed": task_seed, "train_seed": seed, "shots": shots, "cfg": row_cfg}
                        | {"work": str(work), "run_name": "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)}
                    )
    return jobs


def bootstrap_ci(diffs: list[float], seed: int = 0, rounds: int = 10_000) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of paired differences."""
    values = np.asarray(diffs)
    means = np.random.default_rng(seed).choice(values, (rounds, len(values))).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mean_sd(values: list[float]) -> str:
    return "-" if not values else f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"


def keyed(results: list[dict], row: str, shots, metric: str) -> dict[tuple, float]:
    """{(task seed, training seed): metric} of one row; zero-shot rows repeat over training seeds."""
    out = {}
    for r in results:
        scores = r["scores"] if r["row"] == row else r.get("extra", {}).get(row)
        if scores is not None and r["shots"] == shots and (r["row"] == row or r["row"] == "default"):
            out[(r["task_seed"], r["train_seed"])] = scores[metric]
    return out


def paired(results: list[dict], a: str, b: str, shots=None, metric: str = "test") -> str:
    left, right = keyed(results, a, shots, metric), keyed(results, b, shots, metric)
    if ROWS.get(b, {}) is None:  # zero-shot: one value per task seed, paired with every run
        right = {k: right[(k[0], 0)] for k in left if (k[0], 0) in right}
    diffs = [left[k] - right[k] for k in left if k in right]
    if len(diffs) < 2:
        return f"| {a} − {b} | {metric} | - | - | - |"
    low, high = bootstrap_ci(diffs)
    wins = sum(d > 0 for d in diffs)
    return f"| {a} − {b} | {metric} | {statistics.mean(diffs):+.3f} | [{low:+.3f}, {high:+.3f}] | {wins}/{len(diffs)} |"


def print_tables(results: list[dict], args) -> None:
    names = [*args.rows, *(f"WiSE-FT {a}" for a in WISE_ALPHAS if "default" in args.rows)]
    print("\n| row | test macro F1 | shifted macro F1 | subtle classes (test) | test, best-on-val | runs | train s |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        cells = [mean_sd(list(keyed(results, name, None, m).values())) for m in ("test", "shifted", "subtle")]
        trained = ROWS.get(name) is not None
        best = mean_sd(list(keyed(results, name, None, "test_best_on_val").values())) if trained else "-"
        runs = [r for r in results if r["row"] == name and r["shots"] is None]
        secs = statistics.mean(r["seconds"] for r in runs) if runs else 0.0
        print(f"| {name} | {' | '.join(cells)} | {best} | {len(keyed(results, name, None, 'test'))} | {secs:.0f} |")
    print("\n| paired difference (last epoch) | split | mean | bootstrap 95% CI | wins |\n|---|---|---|---|---|")
    for other in PAIRED:
        if other in args.rows and "default" in args.rows:
            for metric in ("test", "shifted", "subtle"):
                print(paired(results, "default", other, metric=metric))
    if args.shots:
        print("\n| subtle-class images | row | test macro F1 | subtle classes (test) |\n|---|---|---|---|")
        for shots in args.shots:
            for name in SHOT_ROWS:
                cells = [mean_sd(list(keyed(results, name, shots, m).values())) for m in ("test", "subtle")]
                print(f"| {shots} | {name} | {' | '.join(cells)} |")
        print("\n| few-shot paired difference | split | mean | bootstrap 95% CI | wins |\n|---|---|---|---|---|")
        for shots in args.shots:
            for other in ("cross-entropy only", "class-name prompts"):
                line = paired(results, "default", other, shots=shots, metric="subtle")
                print(line.replace("| default", f"| {shots} shots: default", 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="training seeds first-seed .. + train-seeds - 1")
    parser.add_argument("--task-seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of the rows")
    parser.add_argument("--shots", type=lambda s: [int(x) for x in s.split(",") if x], default=[4, 8, 16])
    parser.add_argument("--only-shots", action="store_true", help="run the few-shot columns alone")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a value for every row")
    parser.add_argument("--work", type=Path, default=None, help="folder for tasks and runs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "method_table.json")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {list(ROWS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="method-table-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = {**dataclasses.asdict(CFG()), **TASK, "epochs": args.epochs, "output_dir": str(work / "runs")}
    cfg["class_description_yaml_file"] = str(DESCRIPTIONS)
    for item in args.set:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    for task_seed in args.task_seeds:  # written once here, not by racing workers
        for shots in ([] if args.only_shots else [None]) + args.shots:
            task_folder(work, task_seed, shots)
    jobs = jobs_for(args, cfg, work)
    print(f"{len(jobs)} runs in {work}, {args.jobs} side by side", flush=True)
    results, failed = [], []
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as error:  # one failed run is reported, not the whole table lost
                failed.append({k: v for k, v in job.items() if k != "cfg"} | {"error": repr(error)})
                print(f"FAILED {job['run_name']}: {error!r}", flush=True)
                continue
            result.pop("cfg")
            results.append(result)
            print(f"{result['row']} {result['run_name']}: {json.dumps(result['scores'])}", flush=True)
            record = {"args": {**vars(args), "out": str(args.out), "work": str(work)}, "runs": results}
            args.out.write_text(json.dumps({**record, "failed": failed}, indent=1))  # a killed table keeps its rows
    print_tables(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
