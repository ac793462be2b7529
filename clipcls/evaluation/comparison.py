"""Zero-shot CLIP against the fine-tune, on one or more labelled image sets: the table that says
what fine-tuning (and the descriptions) bought. Rows are scorers, columns the sets' headline
metrics; the zero-shot row is the run's base model scored through its descriptions alone, with the
run's preprocessing (what training started from)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clipcls.evaluation.evaluation import HEADLINE, eval_loader, evaluate_classifier, summary
from clipcls.evaluation.zeroshot import build_zeroshot
from clipcls.inference.scoring import scorer_probabilities, softmax

ZEROSHOT = "zero-shot"


def compare(model, sets: Mapping[str, Any], batch_size: int, workers: int | None, device) -> dict[str, dict]:
    """{set name: {scorer: headline metrics}} for zero-shot and the fine-tune's three scorers.

    `model` is a TrainedModel; `sets` maps a name to an ImageIndex in the model's class order.
    """
    base = build_zeroshot(model.config["model_name"], model.class_names, model.descriptions)
    results: dict[str, dict] = {}
    for name, index in sets.items():
        resize = model.config.get("resize", "squash")
        loader = eval_loader(
            index, model.image_size, model.image_mean, model.image_std, batch_size, workers, device, resize
        )
        zero = evaluate_classifier(base, index, loader, device, lambda o: {ZEROSHOT: softmax(o["text_logits"])})
        tuned = evaluate_classifier(model.classifier, index, loader, device, scorer_probabilities)
        results[name] = {s: summary(m) for s, m in {**zero.metrics, **tuned.metrics}.items()}
        results[name]["num_images"] = int(len(tuned.outputs["targets"]))
    return results


def format_comparison(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One text table: a row per scorer, a column group (accuracy, macro F1, weighted F1) per set."""
    sets = list(results)
    scorers = [s for s in next(iter(results.values())) if s != "num_images"]
    width = max(len(s) for s in scorers) + 2
    groups = [f"{name} ({results[name]['num_images']} images)" for name in sets]
    cell = 13
    span = cell * len(HEADLINE)
    lines = [" " * width + "".join(f"{g:^{span}}" for g in groups)]
    lines.append(f"{'scorer':<{width}}" + "".join(f"{label:>{cell}}" for _ in sets for _, label in HEADLINE))
    for scorer in scorers:
        values = [results[name][scorer][key] for name in sets for key, _ in HEADLINE]
        lines.append(f"{scorer:<{width}}" + "".join(f"{v:>{cell}.4f}" for v in values))
    return "\n".join(lines)
