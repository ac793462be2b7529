"""The evaluation's calibration and decision section: a reliability diagram before/after
temperature scaling, the risk-coverage curve with the coverage at 1/2/5% error, per-class
precision-recall curves, and how the decision rules (`--max-error`, `--good-class`) fare on the
evaluated images. The temperatures are the model's (fitted on validation at training time); a
model without them, evaluated on its own validation split, gets them fitted here (and says so)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.inference.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
    negative_log_likelihood,
    reliability_table,
)
from clipcls.inference.decisions import UNCERTAIN, build_rule, describe_rule
from clipcls.io import atomic_open

ERROR_TARGETS = (0.01, 0.02, 0.05)


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, error on the decided images) when the k most confident images are decided,
    k = 1..N: the selective classifier's risk-coverage curve."""
    order = np.argsort(-probs.max(1), kind="stable")
    wrong = (probs.argmax(1) != labels)[order]
    k = np.arange(1, len(labels) + 1)
    return k / len(labels), np.cumsum(wrong) / k


def coverage_at(probs: np.ndarray, labels: np.ndarray, targets=ERROR_TARGETS) -> dict[str, float]:
    """The largest share of images that can be decided with an empirical error <= each target
    (measured on these images: the curve's best case, not a promise)."""
    coverage, error = risk_coverage(probs, labels)
    return {f"{t:g}": float(coverage[error <= t].max()) if (error <= t).any() else 0.0 for t in targets}


def _figure(panels: int, width: float = 4.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 3.8), squeeze=False)
    return plt, fig, axes[0]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_open(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=100)
    plt.close(fig)
    return path


def plot_reliability(raw: np.ndarray, calibrated: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling."""
    plt, fig, axes = _figure(2)
    for ax, (name, probs) in zip(axes, (("before", raw), ("after", calibrated))):
        table = reliability_table(probs, labels)
        centres = (table["edges"][:-1] + table["edges"][1:]) / 2
        seen = table["count"] > 0
        ax.bar(centres[seen], table["accuracy"][seen], width=1 / len(centres), edgecolor="#35507a", alpha=0.7)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy")
        ax.set_title(f"{title} {name}: ECE {expected_calibration_error(probs, labels):.3f}")
    return _save(plt, fig, path)


def plot_risk_coverage(probs: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """Error on the auto-decided images against the share auto-decided."""
    plt, fig, axes = _figure(1, 5.0)
    coverage, error = risk_coverage(probs, labels)
    axes[0].plot(coverage, error)
    for target in ERROR_TARGETS:
        axes[0].axhline(target, color="grey", linestyle=":", linewidth=0.8)
    axes[0].set(xlabel="coverage (share auto-decided)", ylabel="error on decided images", title=title, xlim=(0, 1))
    axes[0].grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_pr_curves(probs: np.ndarray, labels: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    """One-vs-rest precision-recall curve of every class (scikit-learn)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    from clipcls.evaluation.plots import _font_covering_names  # Hangul/CJK class names in the legend

    with _font_covering_names(list(class_names)):
        plt, fig, axes = _figure(1, 6.0)
        for i, name in enumerate(class_names):
            truth = labels == i
            if not truth.any():
                continue
            precision, recall, _ = precision_recall_curve(truth, probs[:, i])
            axes[0].plot(recall, precision, label=f"{name} (AP {average_precision_score(truth, probs[:, i]):.2f})")
        axes[0].set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
        axes[0].legend(fontsize=7)
        return _save(plt, fig, path)


def model_calibration(model: Any, ev: Any, fit_here: bool) -> tuple[Calibration, str]:
    """The model's calibration, or one fitted on the evaluated (validation) images, and where it came from."""
    stored = Calibration(model.calibration)
    if stored.fitted or not fit_here:
        return stored, "the model's (fitted on validation at training time)" if stored.fitted else "none"
    record = fit_calibration(
        ev.probabilities, ev.outputs["targets"].astype(np.int64), ev.class_names, model.classifier.text_probability
    )
    return Calibration(record), "fitted here, on the evaluated validation split"


def calibration_report(
    ev: Any, model: Any, out_dir: Path, primary: str, fit_here: bool, options: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Calibrate `ev.probabilities` in place (unless options say uncalibrated) and return the
    metrics.json entries and the report section."""
    from clipcls.evaluation.report import png_img

    labels = ev.outputs["targets"].astype(np.int64)
    calibration, source = model_calibration(model, ev, fit_here)
    raw = dict(ev.probabilities)
    per_scorer = {}
    for scorer, probs in raw.items():
        after = calibration.apply(probs, scorer)
        per_scorer[scorer] = {
            "temperature": calibration.temperature(scorer),
            "ece_before": expected_calibration_error(probs, labels),
            "ece_after": expected_calibration_error(after, labels),
            "nll_before": negative_log_likelihood(probs, labels),
            "nll_after": negative_log_likelihood(after, labels),
            "coverage_at_error": coverage_at(after, labels),
        }
        if options.get("calibrated", True):
            ev.probabilities[scorer] = after
    probs = ev.probabilities[primary]
    pngs = [
        plot_reliability(
            raw[primary], calibration.apply(raw[primary], primary), labels, primary, out_dir / "reliability.png"
        ),
        plot_risk_coverage(probs, labels, f"{primary}: risk-coverage", out_dir / "risk_coverage.png"),
        plot_pr_curves(probs, labels, ev.class_names, f"{primary}: precision-recall", out_dir / "pr_curves.png"),
    ]
    result: dict[str, Any] = {"calibration": {"source": source, "scorers": per_scorer}}
    notes = [f"<p>Temperatures: {html.escape(source)}.</p>", _table(per_scorer)]
    rule = build_rule(
        calibration,
        primary,
        ev.class_names,
        options.get("max_error"),
        options.get("good_class"),
        options.get("max_escape"),
    )
    if rule is not None:
        result["decisions"] = {"rule": rule.describe(), "on_this_data": realised(rule, probs, labels)}
        notes.append(f"<pre>{html.escape(describe_rule(rule))}</pre>")
        notes.append(f"<p>On these images: {html.escape(str(result['decisions']['on_this_data']))}</p>")
    notes += [png_img(p, p.stem) for p in pngs]
    return result, [("Calibration and decisions", "".join(notes))]


def realised(rule: Any, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What the rule did on labelled images: coverage and error of the decided ones, and for a
    good class its escape and false-alarm rates."""
    verdicts, _ = rule.decide(probs)
    names = rule.class_names
    decided = np.array([v != UNCERTAIN for v in verdicts])
    wrong = np.array([v != names[y] for v, y in zip(verdicts, labels)])
    out = {
        "coverage": float(decided.mean()),
        "error_when_decided": float(wrong[decided].mean()) if decided.any() else 0.0,
    }
    if rule.good_class is not None:
        good = names.index(rule.good_class)
        passed = np.array([v == rule.good_class for v in verdicts])
        defective = labels != good
        out["escape_rate"] = float(passed[defective].mean()) if defective.any() else float("nan")
        out["false_alarm_rate"] = float((~passed[~defective]).mean()) if (~defective).any() else float("nan")
    return out


def _table(per_scorer: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th>scorer</th><th>T</th><th>ECE before</th><th>ECE after</th><th>NLL before</th><th>NLL after</th>"
    head += "".join(f"<th>coverage at {t:g} error</th>" for t in ERROR_TARGETS) + "</tr>"
    rows = []
    for scorer, m in per_scorer.items():
        t = "-" if m["temperature"] is None else f"{m['temperature']:.3f}"
        cells = "".join(f"<td>{m[k]:.4f}</td>" for k in ("ece_before", "ece_after", "nll_before", "nll_after"))
        cover = "".join(f"<td>{v:.3f}</td>" for v in m["coverage_at_error"].values())
        rows.append(f'<tr><td class="name">{html.escape(scorer)}</td><td>{t}</td>{cells}{cover}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"
