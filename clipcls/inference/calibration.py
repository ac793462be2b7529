"""Calibrated probabilities: temperature scaling per scorer (Guo et al., ICML 2017).

A fine-tuned classifier's softmax is usually over-confident (or, with a small logit scale,
under-confident). One scalar per scorer, fitted on the validation split by minimising the
negative log-likelihood, fixes most of it without changing any prediction (argmax is kept).

Every scorer is calibrated from its *raw probabilities*: `softmax(log(p) / T)`. For the head
that is exactly `softmax(logits / T)`; for the ensemble (a mean of probabilities, which has no
logits) it is the same formula on the log of the mean. Working from probabilities lets the
ONNX/OpenVINO graphs, which output probabilities, apply the identical numpy function.

The fitted record (`fit_calibration`) is a plain dict of lists and floats, stored as is in the
checkpoint (`ckpt["clipcls"]["calibration"]`), in metrics.json and in every export's JSON. It
keeps the validation split's raw probabilities and labels too (rounded to 7 significant digits):
the decision rules (`clipcls.inference.decisions`) pick their thresholds from them at predict
time, for whatever `--max-error` or `--good-class` the user asks. Numpy only; torch is imported
by the fit alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger("clipcls")

SCORERS = ("head", "text", "ensemble")  # = clipcls.inference.scoring.SCORERS
MIN_IMAGES = 20  # fewer validation images than this: temperatures too noisy to trust
ECE_BINS = 15  # equal-width confidence bins (Guo et al.)
TINY = 1e-30  # log(0) guard: a probability that underflowed
T_RANGE = (0.02, 50.0)  # fitted temperatures are clipped here (a degenerate split must not give 0 or inf)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """log p in float64, with underflowed zeros clamped to log(TINY)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), TINY, None))


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """`softmax(log(p) / T)` row-wise in float64; None or 1 returns `p` unchanged (as float64)."""
    probs = np.asarray(probs, dtype=np.float64)
    if temperature is None or temperature == 1.0 or probs.size == 0:
        return probs
    z = log_probabilities(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    exp = np.exp(z)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The temperature T minimising the mean cross-entropy of `softmax(log_probs / T)` on
    `labels`: L-BFGS on log T (the NLL is smooth in it and T stays positive), float64."""
    import torch

    z = torch.as_tensor(np.asarray(log_probs, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(np.clip(np.exp(log_t.item()), *T_RANGE))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean |accuracy - confidence| over equal-width confidence bins of
    the top-1 probability."""
    table = reliability_table(probs, labels, bins)
    total = table["count"].sum()
    if total == 0:
        return float("nan")
    return float(np.sum(table["count"] * np.abs(table["accuracy"] - table["confidence"])) / total)


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: image count, accuracy and mean confidence (0 where a bin is empty):
    the numbers behind a reliability diagram and the ECE."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64) if len(probs) else np.zeros(0)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (0, 1/b] is bin 0
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, np.bincount(which, correct, bins) / count, 0.0)
        mean_conf = np.where(count > 0, np.bincount(which, confidence, bins) / count, 0.0)
    return {"edges": np.linspace(0, 1, bins + 1), "count": count, "accuracy": accuracy, "confidence": mean_conf}


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return float("nan")
    return float(-log_probabilities(probs[np.arange(len(probs)), np.asarray(labels)]).mean())


def split_problem(labels: np.ndarray, class_names: Sequence[str], min_images: int = MIN_IMAGES) -> str | None:
    """Why a calibration split cannot be trusted (a class without images, too few images), or None."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    missing = [name for name, count in zip(class_names, counts) if count == 0]
    if missing:
        return f"the calibration split has no image of class(es) {', '.join(repr(n) for n in missing)}"
    if len(labels) < min_images:
        return f"the calibration split has only {len(labels)} images (at least {min_images} needed)"
    return None


def _rounded(array: np.ndarray) -> list[list[float]]:
    """Probabilities as JSON-friendly lists, 7 significant digits (float32's precision)."""
    return [[float(f"{v:.7g}") for v in row] for row in np.asarray(array, dtype=np.float64)]


def scorer_summary(raw: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """Temperature, ECE and NLL before and after it, on one split."""
    calibrated = apply_temperature(raw, temperature)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(raw, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "nll_before": negative_log_likelihood(raw, labels),
        "nll_after": negative_log_likelihood(calibrated, labels),
    }


def fit_calibration(
    raw: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    text_probability: str = "softmax",
    min_images: int = MIN_IMAGES,
) -> dict[str, Any]:
    """Fit a temperature for every scorer of `raw` (scorer -> raw probabilities of the
    validation split) and return the record to store with the model.

    A split that lacks a class or is too small gives a warning naming the class (or the count)
    and an uncalibrated record (`temperatures` empty, `warning` set): predictions then use the
    raw probabilities. SigLIP's per-class sigmoid text scores are not a distribution, so "text"
    and "ensemble" are left uncalibrated for such models."""
    labels = np.asarray(labels, dtype=np.int64)
    record: dict[str, Any] = {
        "method": "temperature scaling (NLL, L-BFGS on log T)",
        "class_names": list(class_names),
        "num_images": int(len(labels)),
        "temperatures": {},
        "scorers": {},
        "warning": split_problem(labels, class_names, min_images),
        "validation": None,
    }
    if record["warning"]:
        log.warning(
            "%s: probabilities stay uncalibrated and --max-error/--good-class are unavailable", record["warning"]
        )
        return record
    for scorer, probs in raw.items():
        if scorer != "head" and text_probability != "softmax":
            continue
        temperature = fit_temperature(log_probabilities(probs), labels)
        record["temperatures"][scorer] = temperature
        record["scorers"][scorer] = scorer_summary(probs, labels, temperature)
    stored = {s: _rounded(raw[s]) for s in ("head", "text") if s in raw}
    record["validation"] = {"labels": labels.tolist(), "probabilities": stored}
    return record


class Calibration:
    """A stored calibration record, applied: `apply(probs, scorer)` and the validation split's
    calibrated probabilities for the decision rules. A missing record (a model trained before
    calibration existed) or an uncalibrated one leaves probabilities as they are."""

    def __init__(self, record: Mapping[str, Any] | None) -> None:
        self.record = dict(record or {})
        self.temperatures: dict[str, float] = dict(self.record.get("temperatures") or {})
        self.num_classes = len(self.record.get("class_names") or [])

    @property
    def fitted(self) -> bool:
        """True when at least one scorer has a temperature."""
        return bool(self.temperatures)

    def temperature(self, scorer: str) -> float | None:
        """The scorer's temperature, or None when it is not calibrated."""
        return self.temperatures.get(scorer)

    def apply(self, probs: np.ndarray, scorer: str) -> np.ndarray:
        """Calibrated probabilities of `scorer`. Rows of another width (classes added at predict
        time with --extra-classes) are returned unchanged: the temperature was fitted without them."""
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            return np.asarray(probs, dtype=np.float64)
        return apply_temperature(probs, self.temperature(scorer))

    def validation(self, scorer: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(calibrated probabilities, labels) of the validation split for `scorer`, or None
        when the record holds no validation scores."""
        stored = self.record.get("validation")
        if not stored:
            return None
        probs = stored["probabilities"]
        if scorer == "ensemble":
            raw = (np.asarray(probs["head"], np.float64) + np.asarray(probs["text"], np.float64)) / 2
        else:
            raw = np.asarray(probs[scorer], np.float64)
        return apply_temperature(raw, self.temperature(scorer)), np.asarray(stored["labels"], np.int64)

    def summary(self) -> dict[str, Any]:
        """The record without the validation scores: what metrics.json and /health show."""
        return {k: v for k, v in self.record.items() if k != "validation"}
