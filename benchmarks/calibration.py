"""Issue 19: calibration and decision rules measured on data they were not fitted on.

    # a NEU split (symlinks, nothing copied): train / val / held 100 / 100 / the rest a class
    python benchmarks/calibration.py split-neu --out /tmp/neu19
    # measure a trained model: fit on VAL, measure on the named held-out splits, and over seeds
    # of the calibration split (VAL + the first held-out split pooled, halved at random)
    python benchmarks/calibration.py measure RUN --val DIR --held test=DIR [shifted=DIR ...]
        [--seeds 5] [--max-error 0.02] [--good-class clean --max-escape 0.005] [--out results.json]

What it reports, per scorer where it applies:
- the temperatures fitted on VAL and ECE / NLL before and after on every held-out split;
- `--max-error`: the selective threshold (clipcls.inference.decisions, the product's rule) and,
  for comparison, split-conformal LAC sets (auto-decide singletons), each fitted on a calibration
  half and measured on the other half: realised error on auto-decided images with its 95%
  Clopper-Pearson interval, and coverage (share auto-decided), for every seed and pooled;
- `--good-class`: the escape and false-alarm rates on held-out images;
- netcal's TemperatureScaling temperature beside ours when netcal is importable (it is not a
  dependency: `pip install --target DIR --no-deps netcal` and put DIR on PYTHONPATH).
Uses the same code as `clipcls predict` (load_trained, the evaluation loader, the calibration and
decision modules), one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcls.inference.calibration import (  # noqa: E402
    Calibration,
    apply_temperature,
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
)
from clipcls.inference.decisions import (  # noqa: E402
    DELTA,
    conformal_quantile,
    escape_threshold,
    prediction_sets,
    selective_threshold,
)

NEU = ROOT.parent / "shared" / "data" / "neu-surface-defects"


def split_neu(out: Path, seed: int, train: int, val: int) -> dict[str, int]:
    """Symlink train/val/held class folders of NEU into `out` (held = what is left)."""
    rng = np.random.default_rng(seed)
    counts = {}
    for folder in sorted(p for p in NEU.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        order = rng.permutation(len(files))
        parts = {"train": order[:train], "val": order[train : train + val], "held": order[train + val :]}
        for split, positions in parts.items():
            dest = out / split / folder.name
            dest.mkdir(parents=True, exist_ok=True)
            for i in positions:
                (dest / files[i].name).symlink_to(files[i].resolve())
            counts[f"{split}/{folder.name}"] = len(positions)
    return counts


def score(model, folder: str, cache: Path | None) -> dict[str, np.ndarray]:
    """Raw probabilities of every scorer and the labels of a labelled folder (cached as .npz)."""
    if cache is not None and cache.is_file():
        data = np.load(cache)
        return {k: data[k] for k in data.files}
    from clipcls.data.index import index_folder
    from clipcls.evaluation.evaluation import eval_loader
    from clipcls.inference.scoring import run_inference, scorer_probabilities

    index = index_folder(folder, class_names=model.class_names)
    loader = eval_loader(index, model.image_size, model.image_mean, model.image_std, 32, 0, "cpu")
    outputs = run_inference(model.classifier, loader, "cpu")
    result = scorer_probabilities(outputs, text_probability=model.classifier.text_probability)
    result["labels"] = outputs["targets"].astype(np.int64)
    if cache is not None:
        np.savez(cache, **result)
    return result


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k errors in n."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    lo = 0.0 if k == 0 else float(beta.ppf((1 - level) / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - (1 - level) / 2, k + 1, n - k))
    return lo, hi


def outcome(decided: np.ndarray, wrong: np.ndarray) -> dict[str, float]:
    """Coverage, errors and realised error (with its interval) on the decided images."""
    n, k = int(decided.sum()), int((decided & wrong).sum())
    lo, hi = clopper_pearson(k, n)
    return {"coverage": float(decided.mean()), "decided": n, "errors": k, "error": k / n if n else 0.0, "ci": [lo, hi]}


def rules_on(cal: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], max_error: float) -> dict:
    """The selective threshold and conformal singletons fitted on `cal`, measured on `test`
    (both calibrated probabilities with labels)."""
    (pc, yc), (pt, yt) = cal, test
    threshold = selective_threshold(pc.max(1), pc.argmax(1) == yc, max_error, DELTA)
    wrong = pt.argmax(1) != yt
    selective = outcome(pt.max(1) >= threshold, wrong)
    sets = prediction_sets(pt, conformal_quantile(pc, yc, max_error))
    conformal = outcome(sets.sum(1) == 1, wrong)
    conformal["set_misses"] = float(1 - sets[np.arange(len(yt)), yt].mean())  # what conformal bounds
    return {"selective": {"threshold": threshold, **selective}, "conformal": conformal}


def good_rates(cal, test, good: int, max_escape: float) -> dict[str, float]:
    """Escape and false-alarm rates on `test` of the good-class threshold fitted on `cal`."""
    (pc, yc), (pt, yt) = cal, test
    threshold = escape_threshold(1 - pc[yc != good, good], max_escape)
    passed = (1 - pt[:, good]) < threshold
    defective = yt != good
    k, n = int((passed & defective).sum()), int(defective.sum())
    return {
        "threshold": threshold,
        "escape": k / n,
        "escapes": k,
        "defective": n,
        "escape_ci": list(clopper_pearson(k, n)),
        "false_alarm": float((~passed[~defective]).mean()),
        "good_images": int((~defective).sum()),
    }


def netcal_temperature(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """netcal's TemperatureScaling on the same inputs, when netcal is importable."""
    try:
        from netcal.scaling import TemperatureScaling
    except Exception:  # noqa: BLE001 - optional comparison only
        return None
    scaler = TemperatureScaling()
    scaler.fit(probs.astype(np.float64), labels)
    weight = np.ravel(scaler.weights)[0] if hasattr(scaler, "weights") else None
    return None if weight is None else float(1.0 / weight)


def pick(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in data.items()}


def fit(data: dict[str, np.ndarray], names: list[str]) -> Calibration:
    return Calibration(fit_calibration({s: data[s] for s in ("head", "text", "ensemble")}, data["labels"], names))


def calibrated(cal: Calibration, data: dict[str, np.ndarray], scorer: str) -> tuple[np.ndarray, np.ndarray]:
    return cal.apply(data[scorer], scorer), data["labels"]


def measure(args: argparse.Namespace) -> dict:
    import torch

    from clipcls.inference.trained_model import load_trained

    torch.set_num_threads(1)
    model = load_trained(args.model)
    names = list(model.class_names)
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    splits = {"val": args.val, **dict(item.split("=", 1) for item in args.held)}
    data = {name: score(model, folder, cache / f"{name}.npz" if cache else None) for name, folder in splits.items()}
    result: dict = {"model": str(args.model), "splits": {k: len(v["labels"]) for k, v in data.items()}}
    on_val = fit(data["val"], names)
    result["temperatures"] = on_val.temperatures
    result["netcal_head_temperature"] = netcal_temperature(data["val"]["head"], data["val"]["labels"])
    result["ece"] = {
        split: {
            scorer: {
                "before": expected_calibration_error(d[scorer], d["labels"]),
                "after": expected_calibration_error(apply_temperature(d[scorer], t), d["labels"]),
                "nll_before": negative_log_likelihood(d[scorer], d["labels"]),
                "nll_after": negative_log_likelihood(apply_temperature(d[scorer], t), d["labels"]),
                "accuracy": float((d[scorer].argmax(1) == d["labels"]).mean()),
            }
            for scorer, t in on_val.temperatures.items()
        }
        for split, d in data.items()
    }
    scorer = args.scorer
    result["fit_on_val"] = {
        split: rules_on(calibrated(on_val, data["val"], scorer), calibrated(on_val, d, scorer), args.max_error)
        for split, d in data.items()
        if split != "val"
    }
    if args.good_class:
        good = names.index(args.good_class)
        result["good_class_fit_on_val"] = {
            split: good_rates(
                calibrated(on_val, data["val"], scorer), calibrated(on_val, d, scorer), good, args.max_escape
            )
            for split, d in data.items()
            if split != "val"
        }
    first_held = next(iter(args.held)).split("=", 1)[0]
    pool = {k: np.concatenate([data["val"][k], data[first_held][k]]) for k in data["val"]}
    seeds = []
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(pool["labels"]))
        cal_rows, test_rows = order[: len(order) // 2], order[len(order) // 2 :]
        cal_data, test_data = pick(pool, cal_rows), pick(pool, test_rows)
        calibration = fit(cal_data, names)
        row = {
            "seed": seed,
            "temperature": calibration.temperatures.get(scorer),
            "ece_before": expected_calibration_error(test_data[scorer], test_data["labels"]),
            "ece_after": expected_calibration_error(*calibrated(calibration, test_data, scorer)),
            **rules_on(
                calibrated(calibration, cal_data, scorer), calibrated(calibration, test_data, scorer), args.max_error
            ),
        }
        if args.good_class:
            row["good_class"] = good_rates(
                calibrated(calibration, cal_data, scorer),
                calibrated(calibration, test_data, scorer),
                good,
                args.max_escape,
            )
        seeds.append(row)
    result["seeds"] = seeds
    result["pooled"] = {rule: outcome_pooled([s[rule] for s in seeds]) for rule in ("selective", "conformal")}
    if args.good_class:
        k = sum(s["good_class"]["escapes"] for s in seeds)
        n = sum(s["good_class"]["defective"] for s in seeds)
        result["pooled"]["good_class"] = {
            "escape": k / n,
            "escape_ci": list(clopper_pearson(k, n)),
            "false_alarm": float(np.mean([s["good_class"]["false_alarm"] for s in seeds])),
        }
    result["settings"] = {
        "scorer": scorer,
        "max_error": args.max_error,
        "delta": DELTA,
        "seeds": args.seeds,
        "pool": f"val + {first_held}, halved per seed",
        "good_class": args.good_class,
        "max_escape": args.max_escape,
    }
    return result


def outcome_pooled(rows: list[dict]) -> dict:
    """Errors and decided images summed over seeds, the pooled error's interval, mean coverage."""
    k, n = sum(r["errors"] for r in rows), sum(r["decided"] for r in rows)
    return {
        "error": k / n if n else 0.0,
        "ci": list(clopper_pearson(k, n)),
        "decided": n,
        "coverage_mean": float(np.mean([r["coverage"] for r in rows])),
        "coverage_min": float(np.min([r["coverage"] for r in rows])),
        "max_seed_error": float(max(r["error"] for r in rows)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split-neu", help="symlink a NEU train/val/held split")
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--train", type=int, default=100)
    split.add_argument("--val", type=int, default=100)
    run = sub.add_parser("measure", help="measure a trained model")
    run.add_argument("model")
    run.add_argument("--val", required=True, help="the calibration split (labelled folder)")
    run.add_argument("--held", nargs="+", required=True, metavar="NAME=DIR", help="held-out labelled folders")
    run.add_argument("--scorer", default="head")
    run.add_argument("--seeds", type=int, default=5)
    run.add_argument("--max-error", type=float, default=0.02)
    run.add_argument("--good-class", default=None)
    run.add_argument("--max-escape", type=float, default=0.005)
    run.add_argument("--cache", default=None, help="folder for the scored probabilities (.npz)")
    run.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "split-neu":
        print(json.dumps(split_neu(args.out, args.seed, args.train, args.val), indent=1))
        return 0
    result = measure(args)
    text = json.dumps(result, indent=1, default=float)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
