"""Exports under hostile or careless use (issue 22): a `resize: crop` model's ONNX/OpenVINO and
HF exports preprocess as training did, and the parity check compares real images through each
side's own preprocessing; `model_file` stays inside the export; --overwrite recognises an export
only by a valid marker; a truncated graph, a pickle payload, an ONNX export given to export, a
`.onnx`-named --out and stale temporary directories each get a clear answer."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls.commands import export, predict
from clipcls.errors import EXIT_ERROR, EXIT_OK
from clipcls.inference.onnx_predictor import GraphExportError, OnnxPredictor, Preprocessing
from clipcls.inference.predictor import Predictor
from clipcls.inference.trained_model import load_trained
from tests.conftest import CLASSES, DESCRIPTIONS, tiny_hf_export, write_images

LEVELS = 3.0  # PIL's and torchvision's antialiased resizes differ by a level or two of 255


def crop_hf_export(root: Path) -> Path:
    """conftest's tiny HF export, but trained (as its config says) with `resize: crop`."""
    import torch

    from clipcls.export.huggingface import export_model
    from clipcls.inference.trained_model import TrainedModel
    from clipcls.model.classifier import ClipClassifier
    from clipcls.model.loading import load_clip

    torch.manual_seed(0)
    parts = load_clip("tiny")
    names = list(CLASSES)
    classifier = ClipClassifier(
        parts.model, parts.tokenizer, names, DESCRIPTIONS, image_mean=parts.image_mean, image_std=parts.image_std
    )
    model = TrainedModel(
        classifier.eval(), names, DESCRIPTIONS, (32, 32), parts.image_mean, parts.image_std, config={"resize": "crop"}
    )
    return export_model(model, root / "hf_crop")


def wide_images(folder: Path, count: int = 10) -> list[str]:
    """128 x 32 photos whose ends differ from their middle: a squash sees the ends, a crop not."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        pixels = np.zeros((32, 128, 3), np.uint8)
        pixels[:, :48] = rng.integers(0, 256, 3)
        pixels[:, 48:80] = rng.integers(0, 256, 3)
        pixels[:, 80:] = rng.integers(0, 256, 3)
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    write_images(root)
    return {"crop": crop_hf_export(root), "squash": tiny_hf_export(root)}


@pytest.fixture(scope="module")
def crop_onnx(models) -> Path:
    out = models["crop"].parent / "crop_onnx"
    assert export.main([str(models["crop"]), "--out", str(out), "--format", "onnx"]) == EXIT_OK
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return wide_images(tmp_path_factory.mktemp("wide"))


# ---------------------------------------------------------------- item 1: preprocessing parity
def test_crop_model_exported_to_onnx_preprocesses_and_predicts_like_its_checkpoint(models, crop_onnx, images):
    prep = json.loads((crop_onnx / "preprocessing.json").read_text())
    assert (prep["mode"], prep["resize"], prep["shortest_edge"]) == ("crop", "shortest_edge", 32)
    assert prep["crop"] == {"height": 32, "width": 32, "position": "center"}
    graph, torch_predictor = OnnxPredictor(crop_onnx), Predictor(load_trained(models["crop"]), device="cpu")
    std = np.asarray(graph.preprocessing.std).reshape(3, 1, 1)
    for path in images:
        diff = np.abs(graph.preprocess(path) - torch_predictor.preprocess(path).numpy()) * std * 255
        assert diff.max() <= LEVELS, f"{path}: {diff.max():.1f} levels"
    want = torch_predictor.predict(images)
    got = graph.predict(images)
    assert got.labels == want.labels
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=2e-3)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_refuses_preprocessing_unlike_training(models, tmp_path: Path, monkeypatch, capsys, fmt: str):
    """The export whose preprocessing.json squashes a crop model (what shipped before) is refused."""
    import clipcls.export.onnx as onnx_export
    import clipcls.export.openvino as openvino_export

    def squashed(model):
        size = tuple(int(x) for x in model.image_size)
        return Preprocessing(size, tuple(model.image_mean), tuple(model.image_std), "squash")

    monkeypatch.setattr(onnx_export, "preprocessing_of", squashed)
    monkeypatch.setattr(openvino_export, "preprocessing_of", squashed, raising=False)
    out = tmp_path / "out"
    assert export.main([str(models["crop"]), "--out", str(out), "--format", fmt]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "the export's preprocessing (squash) differs from training's (resize: crop)" in err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["crop", "squash"])
def test_hf_export_image_processor_does_what_training_did(models, images, kind: str):
    from transformers import CLIPImageProcessor

    directory = models[kind]
    config = json.loads((directory / "preprocessor_config.json").read_text())
    assert config["do_center_crop"] is (kind == "crop")
    assert config["size"] == ({"shortest_edge": 32} if kind == "crop" else {"height": 32, "width": 32})
    processor = CLIPImageProcessor.from_pretrained(directory)
    torch_predictor = Predictor(load_trained(directory), device="cpu")
    std = np.asarray(processor.image_std).reshape(3, 1, 1)
    for path in images[:4]:
        with Image.open(path) as image:
            pixels = processor(images=image.convert("RGB"), return_tensors="np")["pixel_values"][0]
        diff = np.abs(pixels - torch_predictor.preprocess(path).numpy()) * std * 255
        assert diff.max() <= LEVELS, f"{kind} {path}: {diff.max():.1f} levels"


def test_numpy_resize_modes_are_trainings():
    from clipcls.data.transforms import RESIZES
    from clipcls.inference.onnx_predictor import RESIZE_MODES

    assert RESIZE_MODES == RESIZES


def test_preprocessing_json_modes():
    prep = Preprocessing((48, 64), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7), "crop")
    assert Preprocessing.from_json(prep.to_json(), Path("p.json")) == prep
    old = {k: v for k, v in prep.to_json().items() if k != "mode"}  # exports from before the key
    assert Preprocessing.from_json(old, Path("p.json")).resize == "squash"
    with pytest.raises(GraphExportError, match="p.json: unknown resize mode 'pad'"):
        Preprocessing.from_json({**prep.to_json(), "mode": "pad"}, Path("p.json"))


# ---------------------------------------------------------------- item 7: confinement, markers
@pytest.mark.parametrize("model_file", ["../crop_onnx_elsewhere/model.onnx", "/etc/passwd", "link.onnx"])
def test_model_file_outside_the_export_is_refused(crop_onnx, tmp_path: Path, capsys, model_file: str):
    copy = tmp_path / "copy"
    shutil.copytree(crop_onnx, copy)
    outside = tmp_path / "crop_onnx_elsewhere"
    shutil.copytree(crop_onnx, outside)
    os.symlink(outside / "model.onnx", copy / "link.onnx")
    meta = json.loads((copy / "clipcls_graph.json").read_text())
    (copy / "clipcls_graph.json").write_text(json.dumps({**meta, "model_file": model_file}))
    with pytest.raises(GraphExportError, match=f"model_file '{model_file}' is outside the export directory"):
        OnnxPredictor(copy)
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert predict.main([str(copy), str(image), "--out", str(tmp_path / "p.csv")]) == EXIT_ERROR
    assert "is outside the export directory" in capsys.readouterr().err


@pytest.mark.parametrize("marker", ["clipcls.json", "clipcls_graph.json"])
@pytest.mark.parametrize("content", ["", "{}", '{"format_version": 1}', "not json"])
def test_overwrite_needs_a_full_valid_export_marker(models, tmp_path: Path, capsys, marker: str, content: str):
    victim = tmp_path / "thesis"
    victim.mkdir()
    (victim / "thesis.tex").write_text("chapter 1")
    (victim / marker).write_text(content)
    assert export.main([str(models["squash"]), "--out", str(victim), "--overwrite"]) == EXIT_ERROR
    assert "is not an earlier clipcls export" in capsys.readouterr().err
    assert (victim / "thesis.tex").read_text() == "chapter 1"


def test_overwrite_still_replaces_an_earlier_export(models, crop_onnx, tmp_path: Path):
    out = tmp_path / "again"
    shutil.copytree(crop_onnx, out)
    assert export.main([str(models["squash"]), "--out", str(out), "--overwrite"]) == EXIT_OK
    assert (out / "clipcls.json").is_file() and not (out / "model.onnx").exists()


# ---------------------------------------------------------------- unfriendly
def test_truncated_onnx_graph_is_a_clear_error_exit_2(crop_onnx, tmp_path: Path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(crop_onnx, copy)
    data = (copy / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(data[: len(data) // 2])
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert predict.main([str(copy), str(image), "--out", str(tmp_path / "p.csv")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: cannot load {copy / 'model.onnx'}" in err and "Traceback" not in err


class Payload:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("layout", ["zip", "pickle"])
def test_os_system_payload_is_refused_with_our_reason(tmp_path: Path, capsys, layout: str):
    import torch

    path = tmp_path / "evil.ckpt"
    if layout == "zip":
        torch.save({"state_dict": {}, "x": Payload()}, path)
    else:
        path.write_bytes(pickle.dumps({"x": Payload()}, protocol=2))
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    assert predict.main([str(path), str(image), "--out", str(tmp_path / "p.csv")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "it holds Python objects other than tensors and plain data, which could run code; refused" in err
    assert "system" in err and "weights_only" not in err and "Re-running" not in err


def test_export_from_a_graph_export_says_what_it_needs(crop_onnx, tmp_path: Path, capsys):
    assert export.main([str(crop_onnx), "--out", str(tmp_path / "again")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"{crop_onnx} is an ONNX/OpenVINO export" in err and "no checkpoint found" not in err
    assert "the run directory, a .ckpt file or a HuggingFace-format export" in err


@pytest.mark.parametrize("name", ["demo.onnx", "demo.xml", "demo.ONNX"])
def test_out_named_like_a_graph_file_is_refused(models, tmp_path: Path, capsys, name: str):
    out = tmp_path / name
    assert export.main([str(models["squash"]), "--out", str(out), "--format", "onnx"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "is a directory" in err and "demo" in err and not out.exists()


def test_stale_temporary_directories_of_a_killed_export_are_removed(models, tmp_path: Path):
    """`kill -9` mid-export leaves the temporary directory; the next export to that place removes
    it (and any left by a dead process), but not one a live export is writing."""
    from clipcls.io import temp_directory_name

    out = tmp_path / "exp"
    dead = tmp_path / temp_directory_name(out, pid=2**22 + 12345)  # above Linux's pid_max: no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    alive = tmp_path / temp_directory_name(out, pid=os.getpid())
    alive.mkdir()
    assert export.main([str(models["squash"]), "--out", str(out)]) == EXIT_OK
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exp", alive.name])
