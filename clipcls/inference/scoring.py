"""Scorers and batched inference: the one definition of how logits become class probabilities.

A classifier scores an image two ways: its head ("head") and the cosine similarity with the class
descriptions ("text"); "ensemble" is the mean of their probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SCORERS = ("head", "text", "ensemble")


def default_scorer(config: dict[str, Any]) -> str:
    """The scorer a run's predictions come from when none is asked for: "text" where the head was
    not trained (`fc_weight: 0`: no loss reaches it, so it stays its initial weights while the
    towers move, e.g. FLYP), else "head". The one place this is decided: validation metrics and
    checkpoint choice, evaluate, predict, serve and exports all ask here."""
    return "text" if float(config.get("fc_weight", 0.5)) == 0 else "head"


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None) means the GPU when there is one."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float64: SigLIP's independent per-class probability."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))  # tanh form: no overflow warnings


PROBABILITIES = {"softmax": softmax, "sigmoid": sigmoid}


def scorer_probabilities(
    outputs: dict[str, np.ndarray], scorers: tuple[str, ...] = SCORERS, text_probability: str = "softmax"
) -> dict[str, np.ndarray]:
    """Class probabilities of each scorer from head and description logits. The description
    logits become probabilities the way their contrastive loss reads them (`text_probability`:
    softmax over classes, or SigLIP's sigmoid per class); the head is always a softmax."""
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer {unknown[0]!r}: expected one of {', '.join(SCORERS)}")
    probs: dict[str, np.ndarray] = {}
    if "head" in scorers or "ensemble" in scorers:
        probs["head"] = softmax(outputs["head_logits"])
    if "text" in scorers or "ensemble" in scorers:
        probs["text"] = PROBABILITIES[text_probability](outputs["text_logits"])
    if "ensemble" in scorers:
        probs["ensemble"] = (probs["head"] + probs["text"]) / 2
    return {s: probs[s] for s in scorers}


@torch.inference_mode()
def run_inference(model: torch.nn.Module, loader, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Head and description logits for every readable image the loader yields, with labels and
    positions, and the (position, reason) of every image it could not read.

    `model` is a ClipClassifier; the loader yields `clipcls.data.dataset.Batch`es.
    """
    model.eval().to(device)
    chunks: dict[str, list[np.ndarray]] = {"head_logits": [], "text_logits": [], "targets": [], "positions": []}
    failures: list[tuple[int, str]] = []
    for batch in loader:
        failures += batch.failures
        if batch.pixels is None:
            continue
        out = model(batch.pixels.to(device, non_blocking=True))
        chunks["head_logits"].append(out["head_logits"].float().cpu().numpy())
        chunks["text_logits"].append(out["text_logits"].float().cpu().numpy())
        chunks["targets"].append(batch.labels.numpy())
        chunks["positions"].append(batch.positions.numpy())
    num_classes = len(model.class_names)
    empty = {"head_logits": (0, num_classes), "text_logits": (0, num_classes), "targets": (0,), "positions": (0,)}
    outputs = {k: np.concatenate(v) if v else np.zeros(empty[k]) for k, v in chunks.items()}
    outputs["failures"] = failures
    return outputs
