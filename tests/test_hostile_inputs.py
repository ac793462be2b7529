"""Hostile or careless inputs to training, predict, evaluate and export (issue 22): folders with
symlink loops, outputs that name the model or an input, formula cells in CSVs, image formats
outside the allowlist, and stray non-image files in an input folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls.commands import evaluate, export, predict
from clipcls.data.array_batches import ArrayBatch
from clipcls.data.images import ALLOWED_FORMATS, ImageLoadError, load_image
from clipcls.data.index import PathTable, index_folder
from clipcls.data.inputs import collect_inputs
from clipcls.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from clipcls.evaluation.plots import write_confusion_csv
from clipcls.inference.prediction_csv import stream_predictions
from tests.conftest import tiny_hf_export, write_images


def jpeg(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path, format="JPEG")
    return path


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    write_images(root)
    return tiny_hf_export(root)


# ---------------------------------------------------------------- item 2: symlink loops
@pytest.fixture
def looped(tmp_path: Path) -> Path:
    """a.jpg and sub/c.jpg, reachable without end through `loop -> .`, `sub/a -> ..`, `sub/b -> ..`,
    a link to a.jpg, and a link to itself."""
    root = tmp_path / "in"
    jpeg(root / "a.jpg")
    jpeg(root / "sub" / "c.jpg")
    os.symlink(".", root / "loop")
    os.symlink("..", root / "sub" / "a")
    os.symlink("..", root / "sub" / "b")
    os.symlink("a.jpg", root / "same.jpg")
    os.symlink("self", root / "self")
    return root


@pytest.mark.timeout(60)
def test_predict_inputs_visit_each_real_file_once_through_symlink_loops(looped: Path):
    found = collect_inputs([str(looped)])
    assert found.paths == [str(looped / "a.jpg"), str(looped / "sub" / "c.jpg")]
    assert [path for path, _ in found.skipped] == [str(looped / "self")]  # the self-link: reported, not fatal


@pytest.mark.timeout(60)
def test_recursive_glob_visits_each_real_file_once_through_symlink_loops(looped: Path):
    from clipcls.data.walk import expand_glob

    files, folders = expand_glob(str(looped / "**" / "*.jpg"))
    assert files == [str(looped / "a.jpg"), str(looped / "sub" / "c.jpg")] and folders == []
    found = collect_inputs([str(looped / "**")])
    assert sorted(found.paths) == [str(looped / "a.jpg"), str(looped / "sub" / "c.jpg")]


@pytest.mark.timeout(60)
def test_training_index_visits_each_real_file_once_through_symlink_loops(tmp_path: Path):
    root = tmp_path / "data"
    for name in ("red", "blue"):
        jpeg(root / name / "0.jpg")
        jpeg(root / name / "deep" / "1.jpg")
        os.symlink(".", root / name / "loop")
        os.symlink("..", root / name / "deep" / "up")
        os.symlink("self", root / name / "self.jpg")
    os.symlink("loop", root / "loop")  # a looping link among the class folders: not a class
    index = index_folder(root)
    assert index.class_names == ["blue", "red"]
    assert [index.paths[i] for i in range(len(index.paths))] == [
        str(root / name / rel) for name in ("blue", "red") for rel in ("0.jpg", "deep/1.jpg")
    ]


def test_glob_without_double_star_matches_as_before(tmp_path: Path):
    from clipcls.data.walk import expand_glob

    jpeg(tmp_path / "p" / "x.jpg")
    jpeg(tmp_path / "p" / "q" / "y.jpg")
    files, folders = expand_glob(str(tmp_path / "p" / "*"))
    assert files == [str(tmp_path / "p" / "x.jpg")] and folders == [str(tmp_path / "p" / "q")]
    files, _ = expand_glob(str(tmp_path / "p" / "**" / "*.jpg"))  # ** matches zero folders too
    assert files == [str(tmp_path / "p" / "q" / "y.jpg"), str(tmp_path / "p" / "x.jpg")]


# ---------------------------------------------------------------- item 3: outputs
@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A run directory whose files the guard must protect (checked before any model load)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best-epoch=0.ckpt").write_bytes(b"PK\x03\x04 weights")
    (run / "config.yaml").write_text("model_name: tiny\n")
    return run


@pytest.mark.parametrize("target", ["ckpt", "config", "link_to_ckpt", "input", "errors_file_is_input"])
def test_predict_out_may_not_name_the_model_its_run_or_an_input(fake_run: Path, tmp_path: Path, capsys, target):
    ckpt = fake_run / "checkpoints" / "best-epoch=0.ckpt"
    photo = jpeg(tmp_path / "photos" / "photo.png")
    jpeg(tmp_path / "photos" / "p.csv.errors.csv")  # odd, but an input: predict would overwrite it
    os.symlink(ckpt, tmp_path / "innocent.csv")
    out = {
        "ckpt": ckpt,
        "config": fake_run / "config.yaml",
        "link_to_ckpt": tmp_path / "innocent.csv",
        "input": photo,
        "errors_file_is_input": tmp_path / "photos" / "p.csv",
    }[target]
    before = {p: p.read_bytes() for p in (ckpt, fake_run / "config.yaml", photo)}
    inputs = [str(photo), str(tmp_path / "photos" / "p.csv.errors.csv")]
    assert predict.main([str(ckpt), *inputs, "--out", str(out)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "would overwrite" in err and "choose another path" in err
    assert {p: p.read_bytes() for p in before} == before


def test_export_and_evaluate_out_may_not_land_in_the_model_or_the_data(hf_model: Path, tmp_path: Path, capsys):
    inside = hf_model / "onnx"
    assert export.main([str(hf_model), "--out", str(inside), "--format", "hf"]) == EXIT_ERROR
    assert "would overwrite the model directory" in capsys.readouterr().err and not inside.exists()
    data = hf_model.parent / "train"
    out = data / "red" / "eval"
    assert evaluate.main([str(hf_model), "--data", str(data), "--out", str(out)]) == EXIT_ERROR
    assert f"would overwrite the data folder {data}" in capsys.readouterr().err and not out.exists()


def test_audit_out_may_not_land_in_the_data(tmp_path: Path, capsys):
    from clipcls.commands import audit

    data = tmp_path / "data"
    jpeg(data / "red" / "0.jpg")
    out = data / "red" / "audit"
    assert audit.main([str(data), "--out", str(out)]) == EXIT_ERROR
    assert f"would overwrite the data folder {data}" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------- item 4: CSV injection
class FixedPredictor:
    """Scores every image alike: enough to drive `stream_predictions`."""

    class_names = ["=1+1", "@SUM(A1)", "-2+3", "+cmd", "\tTAB", "ok"]

    def logits(self, pixels):
        return pixels

    def probabilities(self, logits):
        return np.tile(np.linspace(0.3, 0.05, 6, dtype=np.float32), (len(logits), 1))

    def decide(self, probs):
        return [self.class_names[i] for i in probs.argmax(1)], ["argmax"] * len(probs)


def test_prediction_and_confusion_csvs_neutralise_formula_cells(tmp_path: Path):
    paths = PathTable(['=HYPERLINK("http://x","y").jpg', "-1.jpg", "plain.jpg"])
    batch = ArrayBatch(np.zeros((2, 1), np.float32), None, np.array([0, 2]), [(1, "=cmd|' /C calc'!A0")])
    out, errors = tmp_path / "p.csv", tmp_path / "e.csv"
    with out.open("w", newline="") as handle, errors.open("w", newline="") as err_handle:
        stream_predictions(FixedPredictor(), [batch], paths, [], handle, err_handle, "full", 6)
    rows = list(csv.reader(out.open(newline="")))
    assert rows[1][:3] == ['\'=HYPERLINK("http://x","y").jpg', "'=1+1", "0.300000"]
    assert rows[1][3:15:2] == ["'=1+1", "'@SUM(A1)", "'-2+3", "'+cmd", "'\tTAB", "ok"]
    assert rows[2][0] == "plain.jpg"
    assert list(csv.reader(errors.open(newline="")))[1] == ["'-1.jpg", "'=cmd|' /C calc'!A0"]
    write_confusion_csv(np.array([[1, -2], [0, 3]]), ["=A1", "b"], tmp_path / "c.csv")
    assert list(csv.reader((tmp_path / "c.csv").open(newline=""))) == [
        ["true \\ predicted", "'=A1", "b"],
        ["'=A1", "1", "-2"],  # numbers, negative ones too, are left alone
        ["b", "0", "3"],
    ]


def test_every_csv_writer_in_the_package_is_the_safe_one():
    root = Path(__file__).resolve().parent.parent / "clipcls"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "csv_writer.py" and ("csv.writer(" in p.read_text() or "csv.DictWriter(" in p.read_text())
    ]
    assert offenders == []


# ---------------------------------------------------------------- item 6: image formats
REFUSED = [("EPS", "RGB"), ("SGI", "RGB"), ("TGA", "RGB"), ("PCX", "RGB"), ("IM", "RGB"), ("MSP", "1")]
REFUSED += [("XBM", "1"), ("DDS", "RGB"), ("QOI", "RGB"), ("ICO", "RGB"), ("JPEG2000", "RGB"), ("SPIDER", "F")]


@pytest.mark.parametrize(("fmt", "mode"), REFUSED)
def test_formats_outside_the_allowlist_are_refused_by_name(tmp_path: Path, fmt: str, mode: str, monkeypatch):
    path = tmp_path / "x.png"  # the extension lies: the format is what counts
    # Pillow's SPIDER writer registers the file's extension (".png") as SPIDER for the whole
    # process, so every later `save("*.png")` would write SPIDER: keep that to this test
    Image.init()  # every plugin's extensions registered first, into the dict that is restored
    monkeypatch.setattr(Image, "EXTENSION", dict(Image.EXTENSION))
    Image.new("RGB", (8, 8), (200, 10, 10)).convert(mode).save(path, format=fmt)
    with pytest.raises(ImageLoadError, match=f"image format {fmt} is not accepted") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("PNG", "RGBA"), ("BMP", "RGB"), ("TIFF", "I;16")])
def test_allowed_formats_load(tmp_path: Path, fmt: str, mode: str):
    path = tmp_path / "x.img"
    Image.new("RGB", (8, 6), (200, 10, 10)).convert(mode).save(path, format=fmt)
    assert load_image(path).size == (8, 6)


@pytest.mark.parametrize(("fmt", "mode", "ext"), [("WEBP", "RGB", "webp"), ("GIF", "P", "gif"), ("PPM", "L", "pgm")])
def test_allowed_formats_load_too(tmp_path: Path, fmt: str, mode: str, ext: str):
    path = tmp_path / f"x.{ext}"
    Image.new("RGB", (8, 6), (200, 10, 10)).convert(mode).save(path, format=fmt)
    assert load_image(path).size == (8, 6) and {"WEBP", "GIF", "PPM"} <= ALLOWED_FORMATS


def test_eps_never_reaches_its_plugin(tmp_path: Path, monkeypatch):
    """Not even the EPS header parser runs (let alone Ghostscript)."""
    from PIL import EpsImagePlugin

    path = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(path, format="EPS")
    calls = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(1))
    with pytest.raises(ImageLoadError, match="image format EPS is not accepted"):
        load_image(path)
    assert calls == []


# ---------------------------------------------------------------- predict: stray files
def test_non_image_file_in_an_input_folder_is_a_note_not_an_error(hf_model: Path, tmp_path: Path, capsys):
    folder = tmp_path / "in"
    jpeg(folder / "a.jpg")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 thumbnails")
    out = tmp_path / "p.csv"
    assert predict.main([str(hf_model), str(folder / "a.jpg"), str(folder / "Thumbs.db"), "--out", str(out)]) == 1
    assert predict.main([str(hf_model), str(folder / "a.jpg"), "--out", str(out)]) == EXIT_OK
    capsys.readouterr()
    assert predict.main([str(hf_model), str(folder), "--out", str(out)]) == EXIT_OK
    err = capsys.readouterr().err
    assert f"note: skipped 1 file(s) without an image extension: {folder / 'Thumbs.db'}" in err
    assert not out.with_name("p.csv.errors.csv").exists()
    tga = folder / "b.png"  # a TGA named .png: tried, and refused by its format's name
    Image.new("RGB", (8, 8)).save(tga, format="TGA")
    assert predict.main([str(hf_model), str(folder), "--out", str(out)]) == EXIT_PARTIAL
    errors = list(csv.DictReader(out.with_name("p.csv.errors.csv").open(newline="")))
    assert [(r["path"], r["error"].split(" (")[0]) for r in errors] == [(str(tga), "image format TGA is not accepted")]
