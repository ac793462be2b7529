"""`clipcls export`, `clipcls.load` and WiSE-FT on a tiny model trained once for this module."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import clipcls
from clipcls.commands import export
from clipcls.inference.checkpoint import CheckpointError
from clipcls.inference.predictor import load_predictor
from clipcls.inference.trained_model import load_trained
from clipcls.model.wise import initial_classifier
from tests.conftest import CLASSES, train_tiny_run

TOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def tuned(run_dir: Path):
    """The fine-tuned model, loaded once (tests only read it)."""
    return load_trained(run_dir)


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    out = run_dir.parent / "export"
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def images(run_dir: Path) -> list[str]:
    root = run_dir.parent.parent / "train"
    return [str(root / name / f"{i}.jpg") for name in CLASSES for i in range(3)]


def test_export_directory_contents(exported: Path):
    names = {p.name for p in exported.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "clipcls.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    } <= names
    assert not [n for n in names if n.endswith(".bin")]  # safetensors only
    meta = json.loads((exported / "clipcls.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 1
    assert meta["class_names"] == ["green", "red", "곰팡이"]
    assert meta["class_to_idx"] == {"green": 0, "red": 1, "곰팡이": 2}
    assert meta["descriptions"]["green"] == ["a green square", "green noise"]
    assert meta["image_size"] == [32, 32] and meta["image_mean"] == [0.5] * 3 and meta["image_std"] == [0.25] * 3
    assert meta["head"]["kind"] == "linear" and meta["temperature"] is None and meta["freeze_text"] is True
    assert meta["wise_alpha"] is None and meta["config"]["model_name"] == "tiny"
    processor = json.loads((exported / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert processor["size"] == {"height": 32, "width": 32} and processor["do_center_crop"] is False


def test_plain_transformers_loads_the_fine_tuned_weights(tuned, exported: Path, images: list[str]):
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from clipcls.data.images import load_image

    plain = CLIPModel.from_pretrained(exported).state_dict()
    weights = tuned.classifier.clip.state_dict()
    assert plain.keys() == weights.keys()
    assert all(torch.equal(plain[k], weights[k]) for k in weights)
    text = "곰팡이 on wallpaper"
    assert AutoTokenizer.from_pretrained(exported)(text)["input_ids"] == tuned.classifier.tokenizer(text)["input_ids"]
    # the exported processor prepares pixels like training's evaluation transform
    hf_pixels = CLIPImageProcessor.from_pretrained(exported)(images=load_image(images[0]), return_tensors="pt")
    ours = clipcls.load(exported).preprocess(images[0])
    assert hf_pixels["pixel_values"][0].shape == ours.shape == (3, 32, 32)
    assert torch.allclose(hf_pixels["pixel_values"][0], ours, atol=1e-4)


def test_export_predicts_like_the_checkpoint(run_dir: Path, exported: Path, images: list[str]):
    from_ckpt = load_predictor(run_dir).predict(images, batch_size=4)
    predictor = clipcls.load(exported)
    from_export = predictor.predict(images, batch_size=4)
    assert from_export.class_names == from_ckpt.class_names == ["green", "red", "곰팡이"]
    assert from_export.head_logits.shape == from_export.text_logits.shape == (9, 3)
    np.testing.assert_allclose(from_export.head_logits, from_ckpt.head_logits, atol=TOL, rtol=0)
    np.testing.assert_allclose(from_export.text_logits, from_ckpt.text_logits, atol=TOL, rtol=0)
    assert from_export.labels == from_ckpt.labels
    np.testing.assert_allclose(from_export.probabilities.sum(1), 1.0, atol=1e-9)
    assert predictor.model.source == exported.resolve()


def base_zero_shot(model):
    """A zero-shot classifier built independently of WiSE-FT: base CLIP, zero-shot head."""
    from clipcls.model.classifier import ClipClassifier
    from clipcls.model.loading import load_clip

    parts = load_clip("tiny")
    zero = ClipClassifier(parts.model, parts.tokenizer, model.class_names, model.descriptions, head_init="zeroshot")
    return dataclasses.replace(model, classifier=zero.eval())


def test_wise_alpha_0_is_the_base_model_and_1_the_fine_tune(run_dir: Path, tuned, tmp_path: Path, images):
    from clipcls.inference.predictor import Predictor

    for alpha in ("0", "1"):
        assert export.main([str(run_dir), "--out", str(tmp_path / alpha), "--wise-alpha", alpha]) == 0
    zero, one = (clipcls.load(tmp_path / a).predict(images) for a in ("0", "1"))
    base = Predictor(base_zero_shot(tuned)).predict(images)
    fine = Predictor(tuned).predict(images)
    half = Predictor(tuned.interpolated(0.5)).predict(images)
    for got, want in ((zero, base), (one, fine)):
        np.testing.assert_allclose(got.head_logits, want.head_logits, atol=TOL, rtol=0)
        np.testing.assert_allclose(got.text_logits, want.text_logits, atol=TOL, rtol=0)
    # with head_init=zeroshot, alpha 0's head scores exactly what zero-shot CLIP's text scores
    np.testing.assert_allclose(zero.head_logits, zero.text_logits, atol=TOL, rtol=0)
    assert np.abs(half.head_logits - zero.head_logits).max() > 1e-3
    assert np.abs(half.head_logits - one.head_logits).max() > 1e-3
    assert json.loads((tmp_path / "0" / "clipcls.json").read_text(encoding="utf-8"))["wise_alpha"] == 0.0


def test_wise_interpolate_returns_a_new_model(tuned):
    model = tuned
    before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    mixed = model.interpolated(0.25)
    assert mixed.classifier is not model.classifier and mixed.wise_alpha == 0.25 and model.wise_alpha is None
    assert all(torch.equal(before[k], v) for k, v in model.classifier.state_dict().items())
    start = initial_classifier(model.config, model.class_names, model.descriptions).state_dict()
    key = "clip.visual_projection.weight"
    expected = 0.75 * start[key] + 0.25 * before[key]
    assert torch.allclose(mixed.classifier.state_dict()[key], expected, atol=1e-6)
    assert mixed.interpolated(0.5).wise_alpha == 0.125  # composes: 0.5 * 0.25


def test_wise_alpha_out_of_range_is_refused(run_dir: Path, tmp_path: Path, capsys):
    assert export.main([str(run_dir), "--out", str(tmp_path / "x"), "--wise-alpha", "1.5"]) == 2
    assert "--wise-alpha must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_failed_export_leaves_no_directory(run_dir: Path, tmp_path: Path, monkeypatch, capsys):
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    out = tmp_path / "out"
    assert export.main([str(run_dir), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither OUT nor the temporary directory


def test_existing_out_is_kept_unless_overwrite(run_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export.main([str(run_dir), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # issue 13: --overwrite replaces only an earlier export, never other files
    assert export.main([str(run_dir), "--out", str(out), "--overwrite"]) == 2
    assert f"refusing to replace {out}: it is not an earlier clipcls export" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()
    assert export.main([str(run_dir), "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from the earlier export")
    assert export.main([str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert (out / "clipcls.json").is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old copy was removed


def test_unsupported_export_version_names_the_file(exported: Path, tmp_path: Path):
    import shutil

    copy = Path(shutil.copytree(exported, tmp_path / "copy"))
    meta = json.loads((copy / "clipcls.json").read_text(encoding="utf-8"))
    (copy / "clipcls.json").write_text(json.dumps({**meta, "format_version": 99}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"clipcls\.json: unsupported export format version 99"):
        load_trained(copy)
