"""A run is self-contained: trained from a local model directory that is then deleted, with the
Hub offline, it still evaluates, predicts and exports with the same numbers, and a checkpoint
copied on its own loads from the base-model files it carries."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cfg import CFG
from tests.conftest import CLASSES, cfg_argv, make_dataset, tiny_cfg

TOL = 1e-5


def go_offline(monkeypatch) -> None:
    """HF_HUB_OFFLINE=1, also for the already-imported hub client (it reads the variable at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def predict_csv(model: Path, images: list[str], out: Path) -> list[dict[str, str]]:
    from clipcls.commands import predict

    assert predict.main([str(model), *images, "--out", str(out), "--device", "cpu"]) == 0
    with open(out, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def evaluation(model: Path, out: Path) -> dict:
    from clipcls.commands import evaluate

    assert evaluate.main([str(model), "--out", str(out), "--device", "cpu"]) == 0
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Scores of a run before and after its base model directory is deleted and the run moved."""
    from clipcls.commands.train import main
    from clipcls.inference.predictor import load_predictor
    from clipcls.model.tiny import build_tiny_clip

    root = tmp_path_factory.mktemp("self_contained")
    base = build_tiny_clip(root / "base-model")
    cfg = tiny_cfg(*make_dataset(root), root / "runs")
    cfg["model_name"] = str(base)
    assert main(cfg_argv(cfg), CFG) == 0
    run = root / "runs" / "test"
    images = [str(root / "train" / name / f"{i}.jpg") for name in CLASSES for i in range(3)]
    before = {
        "metrics": evaluation(run, root / "eval-before"),
        "csv": predict_csv(run, images, root / "before.csv"),
        "logits": load_predictor(run, device="cpu").predict(images),
    }
    shutil.rmtree(base)
    moved_run = Path(shutil.move(run, root / "elsewhere"))
    return {"root": root, "run": moved_run, "images": images, "before": before}


def test_run_directory_holds_the_base_model_files_but_no_weights(moved):
    names = {p.name for p in (moved["run"] / "base_model").iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"} <= names
    assert not [n for n in names if n.endswith((".safetensors", ".bin"))]
    config = json.loads((moved["run"] / "base_model" / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "clip" and config["vision_config"]["image_size"] == 64


def test_moved_run_evaluates_and_predicts_offline_with_the_same_numbers(moved, monkeypatch):
    go_offline(monkeypatch)
    root, run, before = moved["root"], moved["run"], moved["before"]
    metrics = evaluation(run, root / "eval-after")["scorers"]
    assert metrics == before["metrics"]["scorers"]  # every scorer's metrics and confusion matrix
    assert set(metrics) == {"head", "text", "ensemble"} and metrics["head"]["confusion_matrix"]
    assert predict_csv(run, moved["images"], root / "after.csv") == before["csv"]


def test_moved_run_exports_offline_and_the_export_scores_the_same(moved, monkeypatch, tmp_path: Path):
    from clipcls.commands import export
    from clipcls.inference.predictor import load_predictor

    go_offline(monkeypatch)
    assert export.main([str(moved["run"]), "--out", str(tmp_path / "export")]) == 0
    got = load_predictor(tmp_path / "export", device="cpu").predict(moved["images"])
    want = moved["before"]["logits"]
    np.testing.assert_allclose(got.head_logits, want.head_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(got.text_logits, want.text_logits, atol=TOL, rtol=0)


def test_checkpoint_copied_alone_loads_from_the_files_it_carries(moved, monkeypatch, tmp_path: Path):
    from clipcls.inference.checkpoint import load_checkpoint_file
    from clipcls.inference.predictor import load_predictor
    from clipcls.model.loading import BASE_MODEL_KEY

    go_offline(monkeypatch)
    best = sorted((moved["run"] / "checkpoints").glob("best-*.ckpt"))[-1]
    lone = Path(shutil.copy(best, tmp_path / "lone.ckpt"))
    carried = load_checkpoint_file(lone)[BASE_MODEL_KEY]  # weights-only load: plain uint8 tensors
    assert {"config.json", "tokenizer.json", "preprocessor_config.json"} <= set(carried)
    got = load_predictor(lone, device="cpu").predict(moved["images"])
    np.testing.assert_allclose(got.head_logits, moved["before"]["logits"].head_logits, atol=TOL, rtol=0)


def test_checkpoint_without_base_files_still_loads_by_model_name(tmp_path: Path):
    """Checkpoints from before runs were self-contained carry no base files: rebuilt from `model_name`."""
    from clipcls.commands.train import main
    from clipcls.inference.checkpoint import load_checkpoint_file, save_checkpoint_file
    from clipcls.inference.trained_model import load_trained
    from clipcls.model.loading import BASE_MODEL_KEY

    cfg = tiny_cfg(*make_dataset(tmp_path), tmp_path / "runs")
    assert main(cfg_argv(cfg), CFG) == 0
    best = sorted((tmp_path / "runs" / "test" / "checkpoints").glob("best-*.ckpt"))[-1]
    ckpt = load_checkpoint_file(best)
    del ckpt[BASE_MODEL_KEY]
    save_checkpoint_file(ckpt, tmp_path / "old.ckpt")
    model = load_trained(tmp_path / "old.ckpt")
    assert model.class_names == ["green", "red", "곰팡이"] and model.config["model_name"] == "tiny"
