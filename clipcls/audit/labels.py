"""Likely label errors: cleanlab on out-of-fold probabilities of a linear probe.

A logistic regression on the (L2-normalised) image embeddings is fitted k times, each time
predicting the fold it did not see, so every image's probabilities come from a model that was not
trained on its label (Northcutt et al., "Confident learning", JAIR 2021). cleanlab then ranks the
images whose folder label the probabilities contradict (`find_label_issues`, ranked by
self-confidence) and scores every image's label (`get_label_quality_scores`). The ranking is
cleanlab's, not ours; the probe only has to be better than chance, and it is only as good as the
embedding model: a CLIP that cannot tell two classes apart cannot find their swapped labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLDS = 5  # out-of-fold probabilities; fewer when the smallest class has fewer images
MIN_PER_CLASS = 2  # a class needs one image to train and one to predict in every fold split
PROBE_C = 10.0  # inverse L2 strength of the probe; normalised CLIP embeddings need a weak penalty
SEED = 0


def out_of_fold_probabilities(embeddings: np.ndarray, labels: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """(N, C) probabilities of a logistic-regression probe, each row from the fold that held it out.
    `labels` must be 0..C-1 with every class at least MIN_PER_CLASS times."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = max(2, min(folds, int(np.bincount(labels).min())))
    probe = LogisticRegression(C=PROBE_C, max_iter=1000)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    return cross_val_predict(probe, embeddings.astype(np.float32), labels, cv=splitter, method="predict_proba")


def label_issues(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    pred_probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """cleanlab's verdict on the labels of the images whose class has at least MIN_PER_CLASS of
    them (the rest cannot be cross-validated and are listed as skipped).

    Returns `ranked` (image rows, most likely wrong first), `quality` (every image's label-quality
    score, nan where skipped), `suggested` (the probe's class per image, -1 where skipped),
    `pred_probs` and the `probed_classes`. `pred_probs` (N, num_classes) may come from elsewhere
    (a fine-tuned run's cross-validated predictions); then no probe is fitted.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    counts = np.bincount(labels, minlength=num_classes)
    probed = np.flatnonzero(counts >= MIN_PER_CLASS)
    n = len(labels)
    result: dict[str, Any] = {
        "ranked": np.zeros(0, np.int64),
        "quality": np.full(n, np.nan),
        "suggested": np.full(n, -1, np.int64),
        "probed_classes": probed.tolist(),
        "folds": 0,
    }
    if len(probed) < 2:
        return result  # nothing to tell apart
    rows = np.flatnonzero(np.isin(labels, probed))
    remap = np.full(num_classes, -1, np.int64)
    remap[probed] = np.arange(len(probed))
    local = remap[labels[rows]]
    if pred_probs is None:
        probs = out_of_fold_probabilities(embeddings[rows], local)
        result["folds"] = max(2, min(FOLDS, int(np.bincount(local).min())))
    else:
        probs = pred_probs[rows][:, probed]
        probs = probs / probs.sum(axis=1, keepdims=True)
    ranked = find_label_issues(local, probs, return_indices_ranked_by="self_confidence")
    result["ranked"] = rows[ranked]
    result["quality"][rows] = get_label_quality_scores(local, probs)
    result["suggested"][rows] = probed[probs.argmax(axis=1)]
    result["probe_accuracy"] = float((probs.argmax(axis=1) == local).mean())
    return result


def label_rows(result: dict[str, Any], paths, labels: np.ndarray, splits: np.ndarray, class_names, split_names):
    """CSV/report rows of the flagged images, most likely wrong first: the file, its folder class,
    the class the probe suggests and cleanlab's label-quality score (0 = surely wrong)."""
    return [
        _row(rank, int(i), result, paths, labels, splits, class_names, split_names)
        for rank, i in enumerate(result["ranked"], start=1)
    ]


def quality_rows(result: dict[str, Any], paths, labels: np.ndarray, splits: np.ndarray, class_names, split_names):
    """Every probed image, lowest label quality first, with whether cleanlab flagged it: for
    reviewing beyond the flagged set (cleanlab's per-class thresholds can leave a clear swap in a
    small class unflagged while its score is near the bottom)."""
    quality = result["quality"]
    order = np.argsort(np.nan_to_num(quality, nan=np.inf), kind="stable")[: int(np.isfinite(quality).sum())]
    flagged = set(result["ranked"].tolist())
    return [
        {**_row(rank, int(i), result, paths, labels, splits, class_names, split_names), "flagged": int(i) in flagged}
        for rank, i in enumerate(order, start=1)
    ]


def _row(rank: int, i: int, result, paths, labels, splits, class_names, split_names) -> dict[str, Any]:
    return {
        "rank": rank,
        "path": paths[i],
        "split": split_names[splits[i]],
        "class": class_names[labels[i]],
        "suggested": class_names[result["suggested"][i]],
        "label_quality": round(float(result["quality"][i]), 4),
    }
