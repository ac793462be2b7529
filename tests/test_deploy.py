"""ONNX and OpenVINO exports of a tiny model trained once for this module: files, parity with
PyTorch on real images, and `clipcls predict` on them (same CSV, errors file, exit status; no torch)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipcls.commands import export, predict
from clipcls.data.demo import make_demo_dataset
from clipcls.errors import EXIT_ERROR, EXIT_PARTIAL
from clipcls.inference.onnx_predictor import OUTPUT_NAMES, OnnxPredictor, Preprocessing
from clipcls.inference.predictor import Predictor
from clipcls.inference.scoring import SCORERS
from clipcls.inference.trained_model import load_trained
from tests.conftest import CLASSES, tiny_hf_export, write_images

TOL = 1e-4  # the fp32 parity bound on probabilities


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The PyTorch model (an HF export: loaded through the same `load_trained` as a run)."""
    root = tmp_path_factory.mktemp("model")
    write_images(root)
    return tiny_hf_export(root)


@pytest.fixture(scope="module")
def onnx_dir(run_dir: Path) -> Path:
    out = run_dir.parent / "onnx"
    assert export.main([str(run_dir), "--out", str(out), "--format", "onnx"]) == 0
    return out


@pytest.fixture(scope="module")
def openvino_dir(run_dir: Path) -> Path:
    out = run_dir.parent / "openvino"
    assert export.main([str(run_dir), "--out", str(out), "--format", "openvino"]) == 0
    return out


@pytest.fixture(scope="module")
def images(run_dir: Path, tmp_path_factory) -> list[str]:
    """Real JPEGs: the training folders' and a few demo wallpaper photos (other sizes, detail)."""
    train = run_dir.parent / "train"
    demo = make_demo_dataset(tmp_path_factory.mktemp("demo"), scale=0.01)
    return [str(train / name / f"{i}.jpg") for name in CLASSES for i in range(3)] + sorted(
        str(p) for p in demo.rglob("*.jpg")
    )


@pytest.fixture(scope="module")
def torch_predictor(run_dir: Path) -> Predictor:
    return Predictor(load_trained(run_dir), device="cpu")


def torch_probabilities(predictor: Predictor, pixels: torch.Tensor) -> dict[str, np.ndarray]:
    logits = predictor.logits(pixels)
    return {s: predictor.probabilities(logits, s) for s in SCORERS}


def test_onnx_export_files(onnx_dir: Path, run_dir: Path):
    import onnx

    assert {p.name for p in onnx_dir.iterdir()} == {"model.onnx", "preprocessing.json", "clipcls_graph.json"}
    proto = onnx.load(str(onnx_dir / "model.onnx"))
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES) == list(SCORERS)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch
    assert json.loads({p.key: p.value for p in proto.metadata_props}["class_names"]) == list(CLASSES)
    model = load_trained(run_dir)
    prep = json.loads((onnx_dir / "preprocessing.json").read_text())
    assert (prep["height"], prep["width"]) == tuple(model.image_size) == (32, 32)
    assert prep["mean"] == pytest.approx(model.image_mean) and prep["std"] == pytest.approx(model.image_std)
    assert (prep["resize"], prep["interpolation"], prep["crop"]) == ("stretch", "bilinear", None)
    meta = json.loads((onnx_dir / "clipcls_graph.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == list(CLASSES) and meta["runtime"] == "onnxruntime"


@pytest.mark.parametrize("fixture", ["onnx_dir", "openvino_dir"])
def test_parity_with_pytorch_on_real_images(fixture: str, request, torch_predictor: Predictor, images: list[str]):
    """The same preprocessed real images through PyTorch and through the exported graph."""
    graph = OnnxPredictor(request.getfixturevalue(fixture))
    pixels = torch.stack([torch_predictor.preprocess(p) for p in images])
    want = torch_probabilities(torch_predictor, pixels)
    for batch in (pixels[:1], pixels):  # batch 1 and the whole set: the batch axis is dynamic
        got = graph.logits(batch.numpy())
        for scorer in SCORERS:
            assert got[scorer].shape == (len(batch), len(CLASSES))
            diff = np.abs(got[scorer] - want[scorer][: len(batch)]).max()
            assert diff <= TOL, f"{fixture} {scorer}: max |dp| {diff:.2e}"
    assert np.allclose(want["ensemble"], (want["head"] + want["text"]) / 2)


def test_openvino_export_files(openvino_dir: Path):
    names = {p.name for p in openvino_dir.iterdir()}
    assert names == {"model.xml", "model.bin", "preprocessing.json", "clipcls_graph.json"}
    assert json.loads((openvino_dir / "clipcls_graph.json").read_text())["runtime"] == "openvino"


def test_numpy_preprocessing_is_close_to_torchvision(torch_predictor: Predictor, onnx_dir: Path, images: list[str]):
    """PIL's and torchvision's antialiased bilinear resizes round differently by at most a
    couple of levels out of 255; the predicted classes agree."""
    graph = OnnxPredictor(onnx_dir)
    for path in images:
        diff = np.abs(graph.preprocess(path) - torch_predictor.preprocess(path).numpy()).max()
        assert diff * min(graph.preprocessing.std) * 255 <= 2.01
    assert graph.predict(images).labels == torch_predictor.predict(images).labels


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("fixture", ["onnx_dir", "openvino_dir"])
def test_predict_command_on_a_graph_export(fixture, request, run_dir: Path, images: list[str], tmp_path: Path):
    """Same CSV columns, rows and classes as the PyTorch run; a corrupt file is in the errors
    file and the exit status is 1, as with a checkpoint."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, path in enumerate(images[:6]):
        shutil.copy(path, inputs / f"{i}.jpg")
    (inputs / "corrupt.jpg").write_bytes(Path(images[0]).read_bytes()[:200])
    graph_csv, torch_csv = tmp_path / "graph.csv", tmp_path / "torch.csv"
    model = request.getfixturevalue(fixture)
    assert predict.main([str(model), str(inputs), "--out", str(graph_csv), "--scorer", "ensemble"]) == EXIT_PARTIAL
    assert predict.main([str(run_dir), str(inputs), "--out", str(torch_csv), "--scorer", "ensemble"]) == EXIT_PARTIAL
    got, want = read_csv(graph_csv), read_csv(torch_csv)
    assert list(got[0]) == list(want[0]) and len(got) == len(want) == 6
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
    for a, b in zip(got, want):
        assert abs(float(a["probability"]) - float(b["probability"])) < 5e-3  # resize rounding only
    errors = read_csv(Path(str(graph_csv) + ".errors.csv"))
    assert [Path(e["path"]).name for e in errors] == ["corrupt.jpg"]
    assert read_csv(Path(str(torch_csv) + ".errors.csv"))[0]["error"] == errors[0]["error"]


def test_predict_on_onnx_imports_no_torch(onnx_dir: Path, images: list[str], tmp_path: Path):
    out = tmp_path / "p.csv"
    code = (
        "import sys; from clipcls.commands import predict; "
        f"rc = predict.main([{str(onnx_dir)!r}, {images[0]!r}, {images[-1]!r}, '--out', {str(out)!r}]); "
        "print(rc, sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "0 []", result.stderr
    assert len(read_csv(out)) == 2


def test_predict_on_onnx_refuses_extra_classes(onnx_dir: Path, images: list[str], tmp_path: Path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text('"blue": a blue square\n')
    argv = [str(onnx_dir), images[0], "--out", str(tmp_path / "p.csv"), "--extra-classes", str(extra)]
    assert predict.main(argv) == EXIT_ERROR
    assert "--extra-classes needs the text tower" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_onnx_predictor_api_and_scorers(onnx_dir: Path, images: list[str]):
    graph = OnnxPredictor(onnx_dir, scorer="text")
    result = graph.predict(images[:5], batch_size=2)
    assert result.probabilities.shape == (5, len(CLASSES)) and result.scorer == "text"
    assert np.allclose(result.probabilities.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="unknown scorer 'best'"):
        OnnxPredictor(onnx_dir, scorer="best")


def test_unsupported_graph_version_names_the_file(onnx_dir: Path, tmp_path: Path):
    copy = tmp_path / "old"
    shutil.copytree(onnx_dir, copy)
    meta = json.loads((copy / "clipcls_graph.json").read_text())
    (copy / "clipcls_graph.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match=r"clipcls_graph.json: unsupported export format version 99"):
        OnnxPredictor(copy)


def test_missing_runtime_is_a_clear_error(run_dir: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    assert export.main([str(run_dir), "--out", str(tmp_path / "ov"), "--format", "openvino"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "needs the 'openvino' package" in err and "pip install 'clipcls[deploy]'" in err
    assert not (tmp_path / "ov").exists()


def test_preprocessing_json_round_trips():
    prep = Preprocessing((48, 64), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    assert Preprocessing.from_json(prep.to_json(), Path("p.json")) == prep
    with pytest.raises(ValueError, match="p.json: bad or missing preprocessing key 'mean'"):
        Preprocessing.from_json({"height": 1, "width": 1, "std": [1, 1, 1]}, Path("p.json"))
