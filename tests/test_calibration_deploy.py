"""Calibration end to end on a tiny trained run: training stores a record (here a too-small
validation split: a warning and the uncalibrated fallback); a fitted record put in the checkpoint
travels into the HF, ONNX and OpenVINO exports, and the checkpoint, every export, `serve` and
`clipcls.load` give the same calibrated probabilities (1e-5) and verdicts; `clipcls predict`
writes the verdict and rule columns and refuses a --max-error outside (0, 1) by name."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import fastapi.testclient as fastapi_testclient
import numpy as np
import pytest

import clipcls
from clipcls.commands import export, predict
from clipcls.data.index import index_folder
from clipcls.inference.calibration import apply_temperature, fit_calibration
from clipcls.inference.checkpoint import load_checkpoint_file, save_checkpoint_file
from clipcls.inference.onnx_predictor import OnnxPredictor
from clipcls.inference.predictor import Predictor
from clipcls.inference.scoring import SCORERS
from clipcls.inference.trained_model import find_checkpoint, load_trained
from clipcls.serving.app import create_app
from clipcls.serving.backend import load_backend
from tests.conftest import train_tiny_run

TOL = 1e-5
RULE = {"max_error": 0.3, "good_class": "red", "max_escape": 0.2}  # loose: 24 images set the thresholds
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A one-epoch tiny run; what training stored, then a record fitted on all 24 images written
    into its checkpoint (min_images lowered: the fixture data is small)."""
    root = tmp_path_factory.mktemp("calibration")
    run = train_tiny_run(root)
    stored = load_checkpoint_file(find_checkpoint(run))["clipcls"]["calibration"]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    index = index_folder(root / "train", class_names=load_trained(run).class_names)
    raw_predictor = Predictor(load_trained(run), device="cpu", calibrated=False)
    logits = raw_predictor.logits(
        __import__("torch").stack(
            [raw_predictor.preprocess(p) for p in map(index.paths.__getitem__, range(len(index.labels)))]
        )
    )
    raw = {s: raw_predictor.probabilities(logits, s) for s in SCORERS}
    record = fit_calibration(raw, np.asarray(index.labels), raw_predictor.class_names, min_images=10)
    assert set(record["temperatures"]) == set(SCORERS)
    # The one-epoch head is saturated (p ~ 1 - 1e-19): a large temperature spreads its probabilities
    # so that the decision thresholds fall between images, which the verdict comparisons need.
    record["temperatures"] = {s: 30.0 for s in SCORERS}
    ckpt_path = find_checkpoint(run)
    ckpt = load_checkpoint_file(ckpt_path)
    ckpt["clipcls"]["calibration"] = record
    save_checkpoint_file(ckpt, ckpt_path)
    paths = [index.paths[i] for i in range(len(index.labels))]
    return {"run": run, "root": root, "stored": stored, "metrics": metrics, "record": record, "paths": paths}


def same_verdicts(rule, probs: np.ndarray, got: list[str], want: list[str]) -> None:
    """Verdicts agree on every image whose deciding probability is not within 1e-6 of a threshold
    (there, a 1e-7 difference between runtimes may flip it); most images must be compared."""
    good = rule.class_names.index(rule.good_class)
    clear = np.abs((1 - probs[:, good]) - rule.defect_threshold) > 1e-6
    if np.isfinite(rule.confidence_threshold):
        clear &= np.abs(probs.max(1) - rule.confidence_threshold) > 1e-6
    assert clear.mean() >= 0.5
    assert [g for g, c in zip(got, clear) if c] == [w for w, c in zip(want, clear) if c]


@pytest.fixture(scope="module")
def exports(trained: dict) -> dict[str, Path]:
    out = {}
    formats = ["hf", "onnx"] + (["openvino"] if HAS_OPENVINO else [])
    for fmt in formats:
        out[fmt] = trained["root"] / f"export_{fmt}"
        assert export.main([str(trained["run"]), "--out", str(out[fmt]), "--format", fmt]) == 0
    return out


def test_training_stores_the_fallback_for_a_too_small_validation_split(trained: dict):
    stored, summary = trained["stored"], trained["metrics"]["calibration"]
    assert "only" in stored["warning"] and "images" in stored["warning"]
    assert stored["temperatures"] == {} and stored["validation"] is None
    assert summary["warning"] == stored["warning"] and "validation" not in summary


def test_the_fitted_record_changes_probabilities(trained: dict):
    temperatures = trained["record"]["temperatures"]
    assert set(temperatures) == set(SCORERS) and abs(temperatures["head"] - 1) > 1e-3
    raw = Predictor(load_trained(trained["run"]), device="cpu", calibrated=False).predict(trained["paths"][:6])
    cal = Predictor(load_trained(trained["run"]), device="cpu").predict(trained["paths"][:6])
    np.testing.assert_allclose(
        cal.probabilities, apply_temperature(raw.probabilities, temperatures["head"]), atol=1e-12
    )
    assert np.abs(raw.probabilities - cal.probabilities).max() > 1e-5
    np.testing.assert_array_equal(raw.probabilities.argmax(1), cal.probabilities.argmax(1))


def test_every_route_gives_the_same_calibrated_probabilities_and_verdicts(trained: dict, exports: dict):
    paths = trained["paths"]
    reference = Predictor(load_trained(trained["run"]), device="cpu", **RULE)
    assert reference.rule is not None and reference.rule.defect_threshold > 0
    for scorer in SCORERS:
        want = Predictor(load_trained(trained["run"]), device="cpu", scorer=scorer, **RULE).predict(paths)
        hf = Predictor(load_trained(exports["hf"]), device="cpu", scorer=scorer, **RULE).predict(paths)
        assert np.abs(hf.probabilities - want.probabilities).max() <= TOL
        rule = Predictor(load_trained(trained["run"]), device="cpu", scorer=scorer, **RULE).rule
        same_verdicts(rule, want.probabilities, hf.verdicts, want.verdicts)
        for fmt in ("onnx", "openvino"):
            if fmt not in exports:
                continue
            graph = OnnxPredictor(exports[fmt], scorer, threads=1, **RULE).predict(paths)
            assert np.abs(graph.probabilities - want.probabilities).max() <= TOL, (fmt, scorer)
            same_verdicts(rule, want.probabilities, graph.verdicts, want.verdicts)
    api = clipcls.load(exports["hf"], device="cpu", **RULE).predict(paths)
    head = reference.predict(paths)
    assert np.abs(api.probabilities - head.probabilities).max() <= TOL
    same_verdicts(reference.rule, head.probabilities, api.verdicts, head.verdicts)
    assert set(head.rules) <= {"good-class", "max-error"}


@pytest.mark.parametrize("which", ["run", "onnx"])
def test_serve_answers_with_the_calibrated_probabilities_and_verdicts(which: str, trained: dict, exports: dict):
    model = trained["run"] if which == "run" else exports["onnx"]
    paths = trained["paths"][::4]
    want = Predictor(load_trained(trained["run"]), device="cpu", **RULE).predict(paths)
    app = create_app(load_backend(model, "head", "cpu", 1, **RULE), top_k=3)
    files = [("file", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in paths]
    with fastapi_testclient.TestClient(app) as client:
        reply = client.post("/predict", files=files)
    assert reply.status_code == 200, reply.text
    rows = reply.json()["predictions"]
    names = want.class_names
    got = np.array([[{t["class"]: t["probability"] for t in row["top_k"]}[n] for n in names] for row in rows])
    assert np.abs(got - want.probabilities).max() <= TOL
    rule = Predictor(load_trained(trained["run"]), device="cpu", **RULE).rule
    same_verdicts(rule, want.probabilities, [row["verdict"] for row in rows], want.verdicts)
    assert [row["rule"] for row in rows] == want.rules


def test_predict_writes_verdict_and_rule_columns(trained: dict, exports: dict, tmp_path: Path):
    out = tmp_path / "pred.csv"
    folder = trained["root"] / "train"
    args = ["--max-error", "0.3", "--good-class", "red", "--max-escape", "0.2", "--workers", "0"]
    assert predict.main([str(exports["onnx"]), str(folder), "--out", str(out), *args]) == 0
    with out.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    want = OnnxPredictor(exports["onnx"], threads=1, **RULE).predict([r["path"] for r in rows])
    assert [r["verdict"] for r in rows] == want.verdicts and [r["rule"] for r in rows] == want.rules
    assert [float(r["probability"]) for r in rows] == pytest.approx(want.probabilities.max(1).tolist(), abs=1e-6)
    assert all(r["verdict"] and r["rule"] in ("good-class", "max-error") for r in rows)


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_predict_refuses_max_error_outside_0_1(value: str, trained: dict, tmp_path: Path, capsys):
    out = tmp_path / "pred.csv"
    status = predict.main(
        [str(trained["run"]), str(trained["root"] / "train"), "--out", str(out), "--max-error", value]
    )
    assert status == 2 and "--max-error" in capsys.readouterr().err and not out.exists()


def test_a_model_without_calibration_refuses_max_error(trained: dict, tmp_path: Path, capsys):
    """The stored record of a too-small split: predict says why --max-error cannot be honoured."""
    ckpt = load_checkpoint_file(find_checkpoint(trained["run"]))
    ckpt["clipcls"]["calibration"] = trained["stored"]
    bare = tmp_path / "bare.ckpt"
    save_checkpoint_file(ckpt, bare)
    out = tmp_path / "pred.csv"
    status = predict.main([str(bare), str(trained["root"] / "train"), "--out", str(out), "--max-error", "0.1"])
    err = capsys.readouterr().err
    assert status == 2 and "--max-error" in err and "only" in err and not out.exists()


def test_evaluate_reports_calibration_curves_and_decisions(trained: dict, tmp_path: Path):
    from clipcls.commands import evaluate

    out = tmp_path / "eval"
    args = ["--data", str(trained["root"] / "train"), "--out", str(out), "--workers", "0"]
    assert evaluate.main([str(trained["run"]), *args, "--good-class", "red", "--max-escape", "0.2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    head = metrics["calibration"]["scorers"]["head"]
    assert head["temperature"] == 30.0 and set(head["coverage_at_error"]) == {"0.01", "0.02", "0.05"}
    assert "training time" in metrics["calibration"]["source"]
    on_data = metrics["decisions"]["on_this_data"]
    assert 0 <= on_data["escape_rate"] <= 1 and 0 <= on_data["false_alarm_rate"] <= 1
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Calibration and decisions" in page and page.count("data:image/png") >= 4
    for name in ("reliability.png", "risk_coverage.png", "pr_curves.png"):
        assert (out / name).stat().st_size > 1000
    with (out / "predictions.csv").open(encoding="utf-8", newline="") as stream:
        first = next(csv.DictReader(stream))
    want = Predictor(load_trained(trained["run"]), device="cpu").predict([first["path"]]).probabilities.max()
    assert float(first["head_probability"]) == pytest.approx(want, abs=1e-5)  # calibrated, as predict's
