"""Decisions a line can act on, with error rates fixed on the validation split.

- `--max-error A`: a selective-classification threshold on the calibrated top-1 probability.
  An image is auto-decided (its top class) when its probability reaches the threshold, else it is
  `uncertain`. The threshold is the lowest one at which a one-sided binomial test on the
  validation images it accepts rejects "error among them > A" at level `DELTA` (Learn-then-Test,
  Angelopoulos et al. 2021, fixed-sequence testing from the strictest threshold down; Geifman &
  El-Yaniv 2017 bound the same risk). So, with probability >= 1 - DELTA over the validation draw,
  the error rate on auto-decided new images (exchangeable with validation) is at most A.
  Chosen over split-conformal prediction sets by a measurement: see benchmarks/RESULTS.md,
  "Issue 19" (conformal bounds the error over *all* images, not over the auto-decided ones).
- `--good-class G --max-escape E`: pass an image as G when P(defect) = 1 - P(G) is below a
  threshold set at the k-th smallest P(defect) of the defective validation images, k =
  floor(E (n + 1)) (a one-class conformal quantile): a new defective image escapes with
  probability at most k / (n + 1) <= E. The price, the false-alarm rate, is measured on the
  validation images of G.

Plain numpy and math (no torch, no scipy): the ONNX/OpenVINO predictor uses this module too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clipcls.errors import ClipclsError

DELTA = 0.05  # the max-error promise holds with probability >= 95% over the calibration split
DEFAULT_MAX_ESCAPE = 0.005
UNCERTAIN = "uncertain"


class DecisionError(ClipclsError, ValueError):
    """A decision option that cannot be honoured, naming the flag."""


def check_fraction(value: float | None, flag: str) -> float | None:
    """`value` when it lies strictly between 0 and 1 (or is None); else an error naming `flag`."""
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise DecisionError(f"{flag} must be a rate strictly between 0 and 1, got {value!r}")
    return float(value)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space (stable for n in the thousands)."""
    if k >= n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def min_testable(max_error: float, delta: float = DELTA) -> int:
    """The fewest accepted images, all correct, that can show error <= max_error at level delta."""
    return math.ceil(math.log(delta) / math.log1p(-max_error))


def selective_threshold(confidence: np.ndarray, correct: np.ndarray, max_error: float, delta: float = DELTA) -> float:
    """The lowest confidence threshold whose accepted validation images pass the binomial test
    of "error > max_error" at level `delta`, walking down from the strictest threshold and
    stopping at the first failure (fixed-sequence testing); thresholds accepting fewer images
    than `min_testable` cannot pass and are stepped over. `inf` when none passes."""
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    conf = np.asarray(confidence, np.float64)[order]
    errors = np.cumsum(~np.asarray(correct, bool)[order])
    ends = np.r_[np.flatnonzero(np.diff(conf) != 0), len(conf) - 1] if len(conf) else np.zeros(0, int)
    needed, threshold = min_testable(max_error, delta), math.inf
    for end in ends:
        accepted = int(end) + 1
        if accepted < needed:
            continue
        if binomial_cdf(int(errors[end]), accepted, max_error) > delta:
            break
        threshold = float(conf[end])
    return threshold


def conformal_quantile(probs: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """Split-conformal (LAC) score quantile: sets {c : p_c >= 1 - q} hold the true class with
    probability >= 1 - alpha (Angelopoulos & Bates 2021). `inf` (every class) if too few images."""
    scores = 1.0 - np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha))
    return math.inf if rank > n else float(np.sort(scores)[rank - 1])


def prediction_sets(probs: np.ndarray, quantile: float) -> np.ndarray:
    """(N, C) booleans: the conformal prediction set of every image."""
    return np.asarray(probs, np.float64) >= 1.0 - quantile


def escape_threshold(defect_probability: np.ndarray, max_escape: float) -> float:
    """Pass-as-good threshold on P(defect) from the defective validation images: the k-th
    smallest, k = floor(max_escape (n + 1)). 0 (nothing passes) when k < 1."""
    n = len(defect_probability)
    k = math.floor(max_escape * (n + 1))
    return 0.0 if k < 1 else float(np.sort(np.asarray(defect_probability, np.float64))[k - 1])


@dataclass
class DecisionRule:
    """Verdicts from calibrated probabilities: a class, or `uncertain`, and the rule that decided."""

    class_names: list[str]
    max_error: float | None = None
    confidence_threshold: float | None = None  # auto-decide when top-1 probability >= this
    good_class: str | None = None
    max_escape: float | None = None
    defect_threshold: float | None = None  # pass as good_class when P(defect) < this
    validation: dict[str, Any] = field(default_factory=dict)  # rates measured on the validation split

    def decide(self, probs: np.ndarray) -> tuple[list[str], list[str]]:
        """(verdict, rule) per row of (N, C) calibrated probabilities."""
        probs = np.asarray(probs, np.float64)
        top = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        verdicts = [self.class_names[i] for i in top]
        rules = ["argmax"] * len(top)
        if self.good_class is not None:
            good = self.class_names.index(self.good_class)
            defect = probs.copy()
            defect[:, good] = -1.0
            for row in range(len(probs)):
                if 1.0 - probs[row, good] < self.defect_threshold:
                    verdicts[row], rules[row] = self.good_class, "good-class"
                    continue
                top[row] = defect[row].argmax()  # not cleared as good: the likeliest defect
                verdicts[row], rules[row] = self.class_names[top[row]], "good-class"
        if self.confidence_threshold is not None:
            for row in range(len(probs)):
                if rules[row] == "good-class" and verdicts[row] == self.good_class:
                    continue
                rules[row] = "max-error"
                if probs[row, top[row]] < self.confidence_threshold or probs[row].argmax() != top[row]:
                    verdicts[row] = UNCERTAIN
        return verdicts, rules

    def describe(self) -> dict[str, Any]:
        """The rule's settings and validation rates, JSON-ready (for /health, metrics.json)."""
        keys = ("max_error", "confidence_threshold", "good_class", "max_escape", "defect_threshold", "validation")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        if out.get("confidence_threshold") == math.inf:
            out["confidence_threshold"] = None  # nothing is auto-decided (JSON has no infinity)
        return out


def build_rule(
    calibration: Any,  # clipcls.inference.calibration.Calibration
    scorer: str,
    class_names: Sequence[str],
    max_error: float | None = None,
    good_class: str | None = None,
    max_escape: float | None = None,
    delta: float = DELTA,
) -> DecisionRule | None:
    """The decision rule for these options, its thresholds set from the model's stored
    validation scores; None when no option asks for one."""
    max_error = check_fraction(max_error, "--max-error")
    max_escape = check_fraction(max_escape, "--max-escape")
    if max_escape is not None and good_class is None:
        raise DecisionError("--max-escape needs --good-class (the class that passes)")
    if max_error is None and good_class is None:
        return None
    names = list(class_names)
    if good_class is not None and good_class not in names:
        raise DecisionError(f"--good-class {good_class!r} is not a class of the model: {', '.join(names)}")
    stored = calibration.validation(scorer)
    flag = "--max-error" if max_error is not None else "--good-class"
    if stored is None:
        why = calibration.record.get("warning") or "the model was saved without calibration"
        raise DecisionError(f"{flag} needs the validation scores stored at training time, and {why}")
    probs, labels = stored
    if probs.shape[1] != len(names):
        raise DecisionError(f"{flag} works on the trained classes only (not with --extra-classes)")
    rule = DecisionRule(names, validation={"images": int(len(labels))})
    if good_class is not None:
        set_good_class(rule, probs, labels, good_class, max_escape or DEFAULT_MAX_ESCAPE)
    if max_error is not None:
        set_max_error(rule, probs, labels, max_error, delta)
    return rule


def set_good_class(rule: DecisionRule, probs: np.ndarray, labels: np.ndarray, good: str, max_escape: float) -> None:
    """The pass-as-good threshold and its validation escape and false-alarm rates."""
    index = rule.class_names.index(good)
    defect_probability = 1.0 - probs[:, index]
    defective = labels != index
    rule.good_class, rule.max_escape = good, max_escape
    rule.defect_threshold = escape_threshold(defect_probability[defective], max_escape)
    passed = defect_probability < rule.defect_threshold
    rule.validation.update(
        defective=int(defective.sum()),
        escape_rate=float(passed[defective].mean()) if defective.any() else float("nan"),
        false_alarm_rate=float((~passed[~defective]).mean()) if (~defective).any() else float("nan"),
    )
    if rule.defect_threshold == 0.0:
        rule.validation["note"] = (
            f"--max-escape {max_escape:g} needs at least {math.ceil(1 / max_escape) - 1} defective validation "
            f"images, the split has {int(defective.sum())}: nothing passes as {good}"
        )


def set_max_error(rule: DecisionRule, probs: np.ndarray, labels: np.ndarray, max_error: float, delta: float) -> None:
    """The confidence threshold and its validation coverage and error."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    rule.max_error = max_error
    rule.confidence_threshold = selective_threshold(confidence, correct, max_error, delta)
    accepted = confidence >= rule.confidence_threshold
    rule.validation.update(
        coverage=float(accepted.mean()),
        error_when_decided=float((~correct[accepted]).mean()) if accepted.any() else 0.0,
    )
    if not accepted.any():
        rule.validation["note"] = (
            f"no confidence level reaches --max-error {max_error:g} at {1 - delta:.0%} confidence on "
            f"{len(labels)} validation images (at least {min_testable(max_error, delta)} decided without "
            "error are needed): every image is uncertain"
        )


def verdicts_of(
    rule: DecisionRule | None, probs: np.ndarray, class_names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(verdict, rule) per row: the rule's, or the top class and "argmax" when there is none."""
    if rule is not None:
        return rule.decide(probs)
    top = np.asarray(probs).argmax(axis=1) if len(probs) else []
    return [class_names[i] for i in top], ["argmax"] * len(top)


def describe_rule(rule: DecisionRule) -> str:
    """The rule in force and what it did on the validation split, in a line or two."""
    v, parts = rule.validation, []
    if rule.good_class is not None:
        parts.append(
            f"--good-class {rule.good_class} --max-escape {rule.max_escape:g}: passes when P(defect) < "
            f"{rule.defect_threshold:.4g} (validation: escape {v['escape_rate']:.2%} of {v['defective']} defective, "
            f"false alarms {v['false_alarm_rate']:.2%})"
        )
    if rule.max_error is not None:
        threshold = "never" if rule.confidence_threshold == math.inf else f"at p >= {rule.confidence_threshold:.4g}"
        parts.append(
            f"--max-error {rule.max_error:g}: decides {threshold} (validation: {v['coverage']:.1%} of "
            f"{v['images']} decided, error {v['error_when_decided']:.2%} on them)"
        )
    if "note" in v:
        parts.append(f"warning: {v['note']}")
    return "\n".join(parts)
