"""`clipcls export --format openvino --int8`: NNCF post-training quantisation of the OpenVINO
export, on the tiny CLIP of test_deploy (a zero-shot head, no training: seconds)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nncf  # noqa: F401  (a required test dependency: a broken install fails, never skips)
import numpy as np
import pytest

from clipcls.commands import export, predict
from clipcls.data.demo import make_demo_dataset
from clipcls.errors import EXIT_ERROR, EXIT_OK
from clipcls.export.quantize import even_sample, plan_int8
from clipcls.inference.onnx_predictor import OUTPUT_NAMES, OnnxPredictor
from tests.conftest import CLASSES, tiny_hf_export, write_images

# max |p_int8 - p_fp32| on images like the calibration images, any scorer. Measured on this tiny
# random CLIP: 0.011 on the colour squares calibrated on them, 0.012 on the demo photos calibrated
# on all 15 of them. On images unlike the calibration set it is larger: ~0.11 between squares and
# photos, 0.062 on the 15 photos when only 5 of them were calibrated on (calibrate on your data).
INT8_TOL = 0.02


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("int8")
    write_images(root)  # root/train/<class>/{0,1,2}.jpg: the labelled folder
    return tiny_hf_export(root)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """An unlabelled flat folder of demo photos (other sizes and detail than the squares)."""
    demo = make_demo_dataset(tmp_path_factory.mktemp("demo"), scale=0.01)
    flat = tmp_path_factory.mktemp("photos")
    for i, path in enumerate(sorted(demo.rglob("*.jpg"))):
        shutil.copy(path, flat / f"{i:03d}.jpg")
    return flat


@pytest.fixture(scope="module")
def fp32_dir(model_dir: Path) -> Path:
    out = model_dir.parent / "fp32"
    assert export.main([str(model_dir), "--out", str(out), "--format", "openvino"]) == EXIT_OK
    return out


@pytest.fixture(scope="module")
def int8_dir(model_dir: Path) -> Path:
    """Calibrated and evaluated on the labelled folder."""
    out = model_dir.parent / "int8"
    train = model_dir.parent / "train"
    argv = [str(model_dir), "--out", str(out), "--format", "openvino", "--int8", "--calibration", str(train)]
    assert export.main(argv) == EXIT_OK
    return out


def test_int8_export_files_and_figures(int8_dir: Path, model_dir: Path):
    assert {p.name for p in int8_dir.iterdir()} == {
        "model.xml",
        "model.bin",
        "preprocessing.json",
        "clipcls_graph.json",
    }
    assert 'element_type="i8"' in (int8_dir / "model.xml").read_text()  # INT8 constants, not fp32 only
    meta = json.loads((int8_dir / "clipcls_graph.json").read_text())
    assert meta["precision"] == "int8" and meta["runtime"] == "openvino" and meta["class_names"] == list(CLASSES)
    quant = meta["quantization"]
    assert quant["tool"].startswith("nncf ")
    assert quant["calibration"] == {"folder": str(model_dir.parent / "train"), "images": 9, "unreadable": 0}
    ev = quant["evaluation"]
    assert ev["images"] == 9 and ev["folder"] == str(model_dir.parent / "train")
    for precision in ("fp32", "int8"):
        assert set(ev[precision]) == set(OUTPUT_NAMES)
        for figures in ev[precision].values():
            assert set(figures) == {"accuracy", "macro_f1"}
            assert all(0.0 <= v <= 1.0 for v in figures.values())
    assert all(0.0 <= v <= 1.0 for v in ev["top1_agreement"].values())
    assert 0.0 <= ev["max_probability_difference"] <= INT8_TOL


@pytest.fixture(scope="module")
def int8_photos_dir(model_dir: Path, photos: Path) -> Path:
    """Calibrated on all 15 unlabelled photos, evaluated on the labelled squares."""
    out = model_dir.parent / "int8_photos"
    train = model_dir.parent / "train"
    argv = [str(model_dir), "--out", str(out), "--format", "openvino", "--int8", "--calibration", str(photos)]
    assert export.main(argv + ["--eval-data", str(train)]) == EXIT_OK
    return out


@pytest.mark.parametrize(("fixture", "images"), [("int8_dir", "train"), ("int8_photos_dir", "photos")])
def test_int8_is_smaller_and_close_to_fp32(fixture: str, images: str, request, fp32_dir: Path):
    """Same preprocessing; probabilities within INT8_TOL of the fp32 graph on images like the
    calibration images (squares for the square-calibrated model, photos for the other)."""
    int8_dir = request.getfixturevalue(fixture)
    assert (int8_dir / "preprocessing.json").read_text() == (fp32_dir / "preprocessing.json").read_text()
    assert (int8_dir / "model.bin").stat().st_size < 0.5 * (fp32_dir / "model.bin").stat().st_size
    folder = fp32_dir.parent / "train" if images == "train" else request.getfixturevalue("photos")
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    fp32, int8 = OnnxPredictor(fp32_dir), OnnxPredictor(int8_dir)
    pixels = np.stack([fp32.preprocess(p) for p in paths])
    want, got = fp32.logits(pixels), int8.logits(pixels)
    for scorer in OUTPUT_NAMES:
        assert got[scorer].shape == (len(paths), len(CLASSES))
        np.testing.assert_allclose(got[scorer].sum(1), 1.0, atol=1e-5)
        diff = np.abs(got[scorer] - want[scorer]).max()
        assert diff <= INT8_TOL, f"{scorer}: max |dp| {diff:.3g}"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_on_int8_export_writes_the_same_csv(
    int8_photos_dir: Path, fp32_dir: Path, photos: Path, tmp_path: Path
):
    int8_csv, fp32_csv = tmp_path / "int8.csv", tmp_path / "fp32.csv"
    assert predict.main([str(int8_photos_dir), str(photos), "--out", str(int8_csv)]) == EXIT_OK
    assert predict.main([str(fp32_dir), str(photos), "--out", str(fp32_csv)]) == EXIT_OK
    got, want = read_csv(int8_csv), read_csv(fp32_csv)
    assert list(got[0]) == list(want[0]) and len(got) == len(want) == len(list(photos.glob("*.jpg")))
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert {r["prediction"] for r in got} <= set(CLASSES)
    for a, b in zip(got, want):
        assert abs(float(a["probability"]) - float(b["probability"])) <= INT8_TOL


def test_unlabelled_calibration_with_separate_eval_data(model_dir: Path, photos: Path, tmp_path: Path, capsys):
    train = model_dir.parent / "train"
    argv = [
        str(model_dir),
        "--out",
        str(tmp_path / "x"),
        "--format",
        "openvino",
        "--int8",
        "--calibration",
        str(photos),
    ]
    assert export.main(argv + ["--calibration-size", "5", "--eval-data", str(train)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"INT8: calibrated on 5 images of {photos} (0 unreadable)" in printed
    assert f"fp32 vs INT8 on 9 images of {train} (0 unreadable):" in printed
    assert "  head " in printed and "max |p_fp32 - p_int8|" in printed
    quant = json.loads((tmp_path / "x" / "clipcls_graph.json").read_text())["quantization"]
    assert quant["calibration"]["images"] == 5 and quant["evaluation"]["folder"] == str(train)


def test_unlabelled_calibration_alone_reports_no_figures(model_dir: Path, photos: Path, capsys):
    out = model_dir.parent / "int8_nolabels"
    argv = [str(model_dir), "--out", str(out), "--format", "openvino", "--int8", "--calibration", str(photos)]
    assert export.main(argv + ["--calibration-size", "4"]) == EXIT_OK
    assert "no labelled folder" in capsys.readouterr().out
    assert "evaluation" not in json.loads((out / "clipcls_graph.json").read_text())["quantization"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "onnx", "--int8", "--calibration", "."], "--int8 needs --format openvino"),
        (["--format", "openvino", "--int8"], "--int8 needs --calibration DIR"),
        (["--format", "openvino", "--calibration", "."], "apply only with --int8"),
        (["--format", "openvino", "--int8", "--calibration", "/nonexistent/cal"], "calibration folder not found"),
    ],
)
def test_int8_usage_errors(model_dir: Path, tmp_path: Path, capsys, extra: list[str], message: str):
    assert export.main([str(model_dir), "--out", str(tmp_path / "x"), *extra]) == EXIT_ERROR
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_data_must_be_labelled_with_the_models_classes(model_dir: Path, photos: Path, tmp_path: Path, capsys):
    argv = [str(model_dir), "--out", str(tmp_path / "x"), "--format", "openvino", "--int8"]
    assert export.main(argv + ["--calibration", str(photos), "--eval-data", str(photos)]) == EXIT_ERROR
    assert f"--eval-data {photos}: expected a labelled folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_calibration_sample_is_deterministic_and_spread():
    paths = [f"{i:04d}" for i in range(1000)]
    sample = even_sample(paths, 300)
    assert len(sample) == 300 and sample == even_sample(paths, 300)
    assert sample[0] == "0000" and sample[-1] == "0999"
    assert even_sample(paths[:7], 300) == paths[:7]


def test_labelled_calibration_sample_covers_every_class(model_dir: Path):
    request = plan_int8(model_dir.parent / "train", None, list(CLASSES), limit=3)
    assert sorted(Path(p).parent.name for p in request.calibration_paths) == sorted(CLASSES)
    assert request.eval_data is not None and len(request.eval_data.paths) == 9
