"""Classification metrics (scikit-learn): the numbers every report and checkpoint choice reads."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(targets: np.ndarray, preds: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    return {
        "num_images": int(len(targets)),
        "accuracy": float(accuracy_score(targets, preds)),
        "macro_f1": float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(targets, preds, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(targets, preds, labels=labels).tolist(),
    }
