"""Batched inference over a DataLoader: logits from both scorers, labels and positions."""
from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def run_inference(model: torch.nn.Module, loader, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Head and description logits for every readable image the loader yields.

    `model` is a ClipClassifier; loaders yield (pixels, labels, positions) or None for a batch
    whose images were all unreadable.
    """
    model.eval().to(device)
    chunks: dict[str, list[np.ndarray]] = {"head_logits": [], "text_logits": [], "targets": [], "positions": []}
    for batch in loader:
        if batch is None:
            continue
        pixels, labels, positions = batch
        out = model(pixels.to(device, non_blocking=True))
        chunks["head_logits"].append(out["head_logits"].float().cpu().numpy())
        chunks["text_logits"].append(out["text_logits"].float().cpu().numpy())
        chunks["targets"].append(labels.numpy())
        chunks["positions"].append(positions.numpy())
    num_classes = len(model.class_names)
    empty = {"head_logits": (0, num_classes), "text_logits": (0, num_classes), "targets": (0,), "positions": (0,)}
    return {k: np.concatenate(v) if v else np.zeros(empty[k]) for k, v in chunks.items()}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


def scorer_probabilities(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Class probabilities of the three scorers: head, text (descriptions) and their mean."""
    head, text = softmax(outputs["head_logits"]), softmax(outputs["text_logits"])
    return {"head": head, "text": text, "ensemble": (head + text) / 2}
