"""Temperature scaling and the decision rules on synthetic scores: a known temperature is
recovered, the error/escape promises hold on fresh draws, bad options and bad calibration splits
are refused or warned about by name."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from clipcls.commands.common import rate
from clipcls.inference.calibration import (
    Calibration,
    apply_temperature,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    log_probabilities,
    negative_log_likelihood,
)
from clipcls.inference.decisions import (
    UNCERTAIN,
    DecisionError,
    binomial_cdf,
    build_rule,
    conformal_quantile,
    escape_threshold,
    prediction_sets,
    selective_threshold,
    verdicts_of,
)
from clipcls.inference.scoring import softmax


def draw(n: int, classes: int, temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax at `temperature` is the true class distribution: a model whose
    probabilities are over-confident by exactly that temperature."""
    true_logits = rng.normal(0, 2.0, (n, classes))
    true_logits[np.arange(n), rng.integers(0, classes, n)] += 2.5
    p = softmax(true_logits)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return true_logits * temperature, labels


def test_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits, labels = draw(6000, 5, 2.5, rng)
    fitted = fit_temperature(log_probabilities(softmax(logits)), labels)
    assert fitted == pytest.approx(2.5, rel=0.06)
    under, labels = draw(6000, 5, 0.5, rng)
    assert fit_temperature(log_probabilities(softmax(under)), labels) == pytest.approx(0.5, rel=0.06)


def test_calibration_lowers_ece_and_nll_and_keeps_the_argmax():
    rng = np.random.default_rng(1)
    logits, labels = draw(3000, 4, 3.0, rng)
    raw = softmax(logits)
    record = fit_calibration({"head": raw, "text": raw, "ensemble": raw}, labels, ["a", "b", "c", "d"])
    head = record["scorers"]["head"]
    assert head["ece_after"] < head["ece_before"] / 2 and head["nll_after"] < head["nll_before"]
    calibrated = Calibration(record).apply(raw, "head")
    np.testing.assert_array_equal(calibrated.argmax(1), raw.argmax(1))
    np.testing.assert_allclose(calibrated.sum(1), 1.0, atol=1e-12)
    assert expected_calibration_error(calibrated, labels) == pytest.approx(head["ece_after"])
    assert negative_log_likelihood(calibrated, labels) == pytest.approx(head["nll_after"])


def test_apply_temperature_on_probabilities_equals_softmax_of_scaled_logits():
    logits = np.random.default_rng(2).normal(0, 5, (20, 6))
    np.testing.assert_allclose(apply_temperature(softmax(logits), 1.7), softmax(logits / 1.7), atol=1e-12)
    np.testing.assert_array_equal(apply_temperature(softmax(logits), None), softmax(logits))


def test_a_split_missing_a_class_warns_by_name_and_stays_uncalibrated(caplog):
    rng = np.random.default_rng(3)
    logits, labels = draw(200, 3, 2.0, rng)
    labels[labels == 2] = 0  # no image of "stain"
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        record = fit_calibration({"head": softmax(logits)}, labels, ["clean", "mould", "stain"])
    assert "'stain'" in record["warning"] and "'stain'" in caplog.text
    assert record["temperatures"] == {} and record["validation"] is None
    raw = softmax(logits)
    np.testing.assert_array_equal(Calibration(record).apply(raw, "head"), raw)
    with pytest.raises(DecisionError, match="--max-error.*'stain'"):
        build_rule(Calibration(record), "head", ["clean", "mould", "stain"], max_error=0.02)


def test_a_split_of_too_few_images_warns_and_stays_uncalibrated(caplog):
    logits, labels = draw(12, 2, 2.0, np.random.default_rng(4))
    labels[:2] = [0, 1]
    with caplog.at_level(logging.WARNING, logger="clipcls"):
        record = fit_calibration({"head": softmax(logits)}, labels, ["clean", "mould"])
    assert "only 12 images" in record["warning"] and "only 12 images" in caplog.text
    assert not Calibration(record).fitted


def test_binomial_cdf_matches_direct_sums():
    from math import comb

    for k, n, p in [(0, 10, 0.1), (3, 50, 0.02), (7, 200, 0.05)]:
        direct = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
        assert binomial_cdf(k, n, p) == pytest.approx(direct, rel=1e-9)


def selective_draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Confidences in (0.3, 1], most near 1 as a trained model's are, and calibrated:
    P(correct | c) = c."""
    confidence = 1.0 - 0.7 * rng.uniform(size=n) ** 3
    return confidence, rng.uniform(size=n) < confidence


def test_selective_threshold_keeps_its_promise_on_fresh_draws():
    rng = np.random.default_rng(5)
    realised, coverages = [], []
    for _ in range(60):
        threshold = selective_threshold(*selective_draw(1500, rng), max_error=0.05)
        confidence, correct = selective_draw(20000, rng)
        accepted = confidence >= threshold
        realised.append((~correct[accepted]).mean() if accepted.any() else 0.0)
        coverages.append(accepted.mean())
    # P(error > 5%) <= 5% per draw: a few of 60 may exceed, not most; and it must decide something
    assert np.mean(np.array(realised) > 0.05) <= 0.15
    assert np.mean(realised) < 0.05 and np.mean(coverages) > 0.3


def test_selective_threshold_is_infinite_when_nothing_can_be_shown():
    confidence, correct = np.full(50, 0.99), np.ones(50, bool)  # 50 < 59 images needed for 5% at 95%
    assert selective_threshold(confidence, correct, max_error=0.05) == np.inf


def test_conformal_sets_cover_the_true_class():
    rng = np.random.default_rng(6)
    hits = []
    for _ in range(30):
        logits, labels = draw(500, 5, 1.0, rng)
        q = conformal_quantile(softmax(logits), labels, alpha=0.1)
        logits, labels = draw(2000, 5, 1.0, rng)
        sets = prediction_sets(softmax(logits), q)
        hits.append(sets[np.arange(len(labels)), labels].mean())
    assert np.mean(hits) >= 0.9 - 0.01


def test_escape_threshold_keeps_its_promise():
    rng = np.random.default_rng(7)
    escapes = []
    for _ in range(200):
        threshold = escape_threshold(rng.beta(5, 1, 999), max_escape=0.01)  # k = 10
        escapes.append((rng.beta(5, 1, 5000) < threshold).mean())
    assert np.mean(escapes) <= 0.01 + 0.001
    assert escape_threshold(rng.beta(5, 1, 100), max_escape=0.005) == 0.0  # too few defects: none pass


def fitted_record(rng: np.random.Generator, names: list[str]) -> tuple[dict, np.ndarray, np.ndarray]:
    logits, labels = draw(1500, len(names), 2.0, rng)
    raw = softmax(logits)
    return fit_calibration({"head": raw, "text": raw, "ensemble": raw}, labels, names), raw, labels


def test_decision_rule_verdicts_and_rules():
    names = ["clean", "mould", "stain"]
    record, raw, labels = fitted_record(np.random.default_rng(8), names)
    calibration = Calibration(record)
    rule = build_rule(calibration, "head", names, max_error=0.05)
    probs, stored_labels = calibration.validation("head")  # what the thresholds were set on
    np.testing.assert_array_equal(stored_labels, labels)
    np.testing.assert_allclose(probs, calibration.apply(raw, "head"), atol=1e-6)
    verdicts, rules = rule.decide(probs)
    decided = np.array([v != UNCERTAIN for v in verdicts])
    assert set(rules) == {"max-error"} and 0 < decided.mean() < 1
    np.testing.assert_array_equal(decided, probs.max(1) >= rule.confidence_threshold)
    assert rule.validation["coverage"] == pytest.approx(decided.mean())
    good = build_rule(calibration, "head", names, good_class="clean", max_escape=0.01)
    verdicts, rules = good.decide(probs)
    passed = np.array([v == "clean" for v in verdicts])
    np.testing.assert_array_equal(passed, 1 - probs[:, 0] < good.defect_threshold)
    assert (passed & (labels != 0)).sum() / (labels != 0).sum() == pytest.approx(good.validation["escape_rate"])
    assert good.validation["escape_rate"] <= 0.01 and set(rules) == {"good-class"}
    assert all(v != "clean" for v in np.array(verdicts)[~passed])  # not cleared: the likeliest defect
    assert verdicts_of(None, probs, names)[0] == [names[i] for i in probs.argmax(1)]


@pytest.mark.parametrize("value", [0, 1.5, -0.1, 1])
def test_max_error_outside_0_1_is_refused_naming_the_flag(value):
    names = ["clean", "mould"]
    with pytest.raises(DecisionError, match="--max-error"):
        build_rule(Calibration(None), "head", names, max_error=value)


def test_unknown_good_class_and_escape_without_good_class_are_refused():
    names = ["clean", "mould", "stain"]
    record, _, _ = fitted_record(np.random.default_rng(9), names)
    with pytest.raises(DecisionError, match="--good-class 'ok'"):
        build_rule(Calibration(record), "head", names, good_class="ok")
    with pytest.raises(DecisionError, match="--max-escape needs --good-class"):
        build_rule(Calibration(record), "head", names, max_escape=0.01)


def test_rate_type_names_the_problem():
    import argparse

    assert rate("0.02") == 0.02
    for text in ("0", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
            rate(text)
