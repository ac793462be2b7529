"""Score a classifier on a labelled image set with one or more scorers, and write what was found:
metrics.json, confusion matrices (PNG + CSV), predictions.csv and report.html.

Class order always comes from the model: the folder is indexed against the model's class list,
so a folder that lists its classes differently (or lacks some) is scored in the trained indices.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.csv_writer import csv_writer
from clipcls.errors import ClipclsError
from clipcls.io import atomic_open, write_json

HEADLINE = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"))


class EvaluateError(ClipclsError, ValueError):
    """The model or data cannot be evaluated as asked, naming what is missing."""


@dataclass
class Evaluation:
    """Everything one scoring pass produced, in the model's class order."""

    class_names: list[str]
    index: Any  # clipcls.data.index.ImageIndex that was scored
    outputs: dict[str, np.ndarray]  # run_inference output (logits, targets, positions)
    probabilities: dict[str, np.ndarray]  # scorer -> (images, classes)
    metrics: dict[str, dict[str, Any]]  # scorer -> classification_metrics
    skipped: list[dict[str, str]]  # unreadable images: path and error
    missing_classes: list[str]  # model classes with no image in the data


def eval_loader(index, image_size, mean, std, batch_size: int, workers: int | None, device, resize: str = "squash"):
    """The deterministic loader over a labelled index (see clipcls.data.loaders)."""
    from clipcls.data.loaders import inference_loader

    return inference_loader(index.paths, index.labels, image_size, mean, std, batch_size, workers, device, resize)


def skipped_images(index, failures: list[tuple[int, str]]) -> list[dict[str, str]]:
    """The images the loader could not read, each with the reason the loader gave."""
    return [{"path": index.paths[position], "error": reason} for position, reason in sorted(failures)]


def score_outputs(
    index,
    outputs: dict[str, np.ndarray],
    class_names: list[str],
    to_probabilities: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
) -> Evaluation:
    """Metrics per scorer from one inference pass."""
    from clipcls.evaluation.metrics import classification_metrics

    probabilities = to_probabilities(outputs)
    targets = outputs["targets"].astype(np.int64)
    metrics = {
        name: classification_metrics(targets, probs.argmax(1), class_names) for name, probs in probabilities.items()
    }
    missing = [name for name, count in zip(class_names, index.counts()) if count == 0]
    return Evaluation(
        class_names, index, outputs, probabilities, metrics, skipped_images(index, outputs["failures"]), missing
    )


def evaluate_classifier(
    classifier, index, loader, device: str, to_probabilities: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
) -> Evaluation:
    """One inference pass over `loader` (built on `index`) and its metrics."""
    from clipcls.inference.scoring import run_inference

    if len(index.labels) == 0:
        raise EvaluateError(f"{index.root}: no images to evaluate")
    outputs = run_inference(classifier, loader, device)
    if len(outputs["targets"]) == 0:
        raise EvaluateError(f"{index.root}: none of the {len(index.labels)} images could be read")
    return score_outputs(index, outputs, list(classifier.class_names), to_probabilities)


def misclassified(ev: Evaluation, scorer: str) -> list[tuple[str, str, str, float]]:
    """(path, true class, predicted class, its probability) for every mistake of `scorer`."""
    probs = ev.probabilities[scorer]
    preds, targets = probs.argmax(1), ev.outputs["targets"].astype(np.int64)
    wrong = np.flatnonzero(preds != targets)
    return [
        (
            ev.index.paths[int(ev.outputs["positions"][i])],
            ev.class_names[targets[i]],
            ev.class_names[preds[i]],
            float(probs[i, preds[i]]),
        )
        for i in wrong
    ]


def write_predictions(ev: Evaluation, path: Path) -> None:
    """One row per scored image: path, true class, and each scorer's class and probability."""
    scorers = list(ev.probabilities)
    preds = {s: p.argmax(1) for s, p in ev.probabilities.items()}
    with atomic_open(path) as stream:
        writer = csv_writer(stream)
        writer.writerow(["path", "true"] + [col for s in scorers for col in (s, f"{s}_probability")])
        for row, (position, target) in enumerate(zip(ev.outputs["positions"], ev.outputs["targets"])):
            cells = []
            for s in scorers:
                k = int(preds[s][row])
                cells += [ev.class_names[k], f"{ev.probabilities[s][row, k]:.6f}"]
            writer.writerow([ev.index.paths[int(position)], ev.class_names[int(target)], *cells])


def summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {key: metrics[key] for key, _ in HEADLINE}


def format_table(rows: Mapping[str, Mapping[str, float]], first: str = "scorer") -> str:
    """A fixed-width text table: one row per scorer (or alpha), accuracy and both F1s."""
    width = max([len(first)] + [len(str(name)) for name in rows]) + 2
    lines = [f"{first:<{width}}" + "".join(f"{label:>13}" for _, label in HEADLINE)]
    for name, m in rows.items():
        lines.append(f"{str(name):<{width}}" + "".join(f"{m[key]:>13.4f}" for key, _ in HEADLINE))
    return "\n".join(lines)


def html_table(rows: Mapping[str, Mapping[str, float]], first: str) -> str:
    """The same table for the HTML report."""
    from clipcls.evaluation.report import html_table as table

    items = [{first: name, **m} for name, m in rows.items()]
    return table(items, [(first, first, "s"), *((key, label, ".4f") for key, label in HEADLINE)])


def problems_section(ev: Evaluation) -> list[tuple[str, str]]:
    """Report sections for skipped images and classes the data lacks (empty when neither)."""
    import html

    lines = []
    if ev.missing_classes:
        names = ", ".join(html.escape(n) for n in ev.missing_classes)
        lines.append(
            f"<p>Model classes with no image in the data (support 0; their F1 counts as 0 in "
            f"macro F1): <b>{names}</b></p>"
        )
    if ev.skipped:
        items = "".join(f"<li>{html.escape(s['path'])}: {html.escape(s['error'])}</li>" for s in ev.skipped)
        lines.append(f"<p>{len(ev.skipped)} unreadable images were skipped:</p><ul>{items}</ul>")
    return [("Data problems", "".join(lines))] if lines else []


def write_evaluation(
    ev: Evaluation,
    out_dir: Path,
    title: str,
    info: dict[str, Any],
    primary: str,
    curves_csv: Path | None = None,
    extra_json: dict[str, Any] | None = None,
    extra_sections: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """metrics.json, confusion PNG + CSV per scorer, predictions.csv and report.html in `out_dir`."""
    from clipcls.evaluation.plots import plot_confusion, write_confusion_csv
    from clipcls.evaluation.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for scorer, m in ev.metrics.items():
        pngs[scorer] = out_dir / f"confusion_matrix_{scorer}.png"
        plot_confusion(
            m["confusion_matrix"],
            ev.class_names,
            pngs[scorer],
            title=f"{scorer}: accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}",
        )
        write_confusion_csv(m["confusion_matrix"], ev.class_names, out_dir / f"confusion_matrix_{scorer}.csv")
    write_predictions(ev, out_dir / "predictions.csv")
    result = {
        **info,
        "class_names": ev.class_names,
        "num_images": int(len(ev.outputs["targets"])),
        "num_skipped": len(ev.skipped),
        "skipped_images": ev.skipped,
        "missing_classes": ev.missing_classes,
        "scorers": ev.metrics,
        **(extra_json or {}),
    }
    write_json(result, out_dir / "metrics.json")
    pngs = {primary: pngs[primary], **{s: p for s, p in pngs.items() if s != primary}}  # primary first
    facts = {k: v for k, v in info.items() if isinstance(v, (str, int, float))}
    facts.update(images=f"{result['num_images']} scored, {len(ev.skipped)} unreadable skipped")
    write_report(
        out_dir,
        title,
        ev.metrics,
        ev.class_names,
        pngs,
        misclassified(ev, primary),
        curves_csv,
        extra_sections=[*extra_sections, *problems_section(ev)],
        facts=facts,
        misclassified_scorer=primary,
    )
    return result


def warn_problems(ev: Evaluation) -> None:
    if ev.missing_classes:
        print(f"warning: the data has no images of model classes: {ev.missing_classes}", file=sys.stderr)
    if ev.skipped:
        print(f"warning: skipped {len(ev.skipped)} unreadable images (listed in metrics.json)", file=sys.stderr)


# --- `clipcls evaluate` itself ---


def run_dir_of(model_path: Path) -> Path | None:
    """The run directory a model path belongs to (the one holding config.yaml), if any."""
    candidates = [model_path] if model_path.is_dir() else [model_path.parent.parent, model_path.parent]
    return next((c for c in candidates if (c / "config.yaml").is_file()), None)


def validation_index(model, run_dir: Path | None):
    """The run's own validation split, rebuilt from its saved (seeded, stratified) config."""
    from clipcls.config import load_config
    from clipcls.data.splits import load_splits

    cfg = model.config or (load_config(run_dir / "config.yaml") if run_dir else {})
    if not cfg.get("train_dataset_dir"):
        raise EvaluateError(f"{model.source} carries no training config: pass --data DIR")
    try:
        data = load_splits(cfg)
    except ClipclsError as err:
        raise EvaluateError(f"cannot rebuild the run's validation split ({err}); pass --data DIR") from err
    if data.class_names != model.class_names:
        raise EvaluateError(
            f"{cfg['train_dataset_dir']} now has classes {data.class_names}, but the model was "
            f"trained on {model.class_names}; pass --data DIR"
        )
    where = cfg.get("val_dataset_dir") or f"{cfg['train_dataset_dir']} (validation split, seed {cfg['seed']})"
    return data.val, str(where)


def wise_sweep(model, alphas: Sequence[float], loader, device: str) -> dict[str, dict[str, dict[str, float]]]:
    """Headline metrics of each scorer for WiSE-FT interpolations at each alpha."""
    from clipcls.evaluation.metrics import classification_metrics
    from clipcls.inference.scoring import run_inference, scorer_probabilities

    results = {}
    for alpha in alphas:
        mixed = model.interpolated(alpha)
        outputs = run_inference(mixed.classifier, loader, device)
        targets = outputs["targets"].astype(np.int64)
        results[f"{alpha:g}"] = {
            scorer: summary(classification_metrics(targets, probs.argmax(1), model.class_names))
            for scorer, probs in scorer_probabilities(
                outputs, text_probability=mixed.classifier.text_probability
            ).items()
        }
        del mixed
    return results


def wise_section(sweep: Mapping[str, Mapping[str, Mapping[str, float]]]) -> tuple[str, str]:
    """One table per scorer, rows = alpha (0 = the initial model, 1 = the fine-tune)."""
    scorers = next(iter(sweep.values())).keys()
    body = "".join(f"<p><b>{s}</b></p>" + html_table({a: r[s] for a, r in sweep.items()}, "alpha") for s in scorers)
    note = '<p class="note">alpha 0 = the original CLIP weights, 1 = the fine-tuned weights.</p>'
    return "WiSE-FT weight interpolation", note + body
