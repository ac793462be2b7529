"""`clipcls predict` and the Predictor API on a tiny model trained once for this module."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipcls.commands import predict
from clipcls.data.images import ImageLoadError, load_image
from clipcls.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from clipcls.inference.predictor import Predictor, load_predictor
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def train_images(run_dir: Path) -> Path:
    return run_dir.parent.parent / "train"


@pytest.fixture
def messy(train_images: Path, tmp_path: Path) -> Path:
    """Four readable images (one nested two levels deep, one with an upper-case extension), a
    truncated JPEG, a text file, a text file named .png, and hidden entries to be ignored."""
    root = tmp_path / "in"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    shutil.copy(train_images / "red" / "0.jpg", root / "a.jpg")
    shutil.copy(train_images / "green" / "1.jpg", root / "nested" / "b.jpg")
    shutil.copy(train_images / "곰팡이" / "2.jpg", root / "nested" / "deeper" / "c.JPG")
    shutil.copy(train_images / "red" / "3.jpg", root / "nested" / "d.png")  # a JPEG named .png decodes fine
    shutil.copy(train_images / "red" / "4.jpg", root / ".hidden" / "h.jpg")
    (root / "corrupt.jpg").write_bytes((train_images / "red" / "5.jpg").read_bytes()[:300])
    (root / "notes.txt").write_text("not an image")
    (root / "fake.png").write_text("not a png either")
    (root / ".DS_Store").write_bytes(b"\0\1")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_folder_with_bad_files(run_dir: Path, messy: Path, tmp_path: Path, capsys):
    out = tmp_path / "preds.csv"
    status = predict.main([str(run_dir), str(messy), "--out", str(out), "--top-k", "2", "--workers", "2"])
    assert status == EXIT_PARTIAL == 1
    rows = read_csv(out)
    readable = [
        messy / "a.jpg",
        messy / "nested" / "b.jpg",
        messy / "nested" / "d.png",
        messy / "nested" / "deeper" / "c.JPG",
    ]
    assert [r["path"] for r in rows] == [str(p) for p in readable]  # sorted walk, hidden entries skipped
    assert list(rows[0]) == [
        "path",
        "prediction",
        "probability",
        "top1",
        "top1_probability",
        "top2",
        "top2_probability",
        "verdict",
        "rule",
    ]
    assert all(r["verdict"] == r["prediction"] and r["rule"] == "argmax" for r in rows)  # no decision rule asked
    errors = {r["path"]: r["error"] for r in read_csv(out.with_name("preds.csv.errors.csv"))}
    assert set(errors) == {str(messy / "corrupt.jpg"), str(messy / "fake.png")}  # notes.txt: a note, not an error
    assert "cannot identify image file" in errors[str(messy / "fake.png")]
    assert errors[str(messy / "corrupt.jpg")].startswith("OSError")
    err = capsys.readouterr().err
    assert "wrote 4 predictions" in err and "2 file(s) could not be predicted" in err and "corrupt.jpg" in err
    assert f"note: skipped 1 file(s) without an image extension: {messy / 'notes.txt'}" in err
    # the CSV agrees with the Python API on the same files (the head scorer by default)
    api = load_predictor(run_dir).predict([str(p) for p in readable])
    assert [r["prediction"] for r in rows] == api.labels
    np.testing.assert_allclose([float(r["probability"]) for r in rows], api.probabilities.max(1), atol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


def test_top_k_is_sorted_and_sums_to_at_most_one(run_dir: Path, train_images: Path, tmp_path: Path):
    out = tmp_path / "p.csv"
    assert (
        predict.main(
            [
                str(run_dir),
                str(train_images / "red"),
                "--out",
                str(out),
                "--top-k",
                "3",
                "--scorer",
                "ensemble",
                "--workers",
                "0",
                "--batch-size",
                "3",
            ]
        )
        == EXIT_OK
    )
    rows = read_csv(out)
    assert len(rows) == 8
    for row in rows:
        probs = [float(row[f"top{i}_probability"]) for i in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert row["prediction"] == row["top1"] and row["probability"] == row["top1_probability"]
        assert {row["top1"], row["top2"], row["top3"]} == {"green", "red", "곰팡이"}
    assert not out.with_name("p.csv.errors.csv").exists()


def test_submission_format(run_dir: Path, train_images: Path, tmp_path: Path):
    out = tmp_path / "submission.csv"
    pattern = str(train_images / "*" / "[01].jpg")  # a glob, as a shell would not expand it when quoted
    stale = out.with_name("submission.csv.errors.csv")
    stale.write_text("path,error\nold,old\n")
    assert predict.main([str(run_dir), pattern, "--out", str(out), "--format", "submission", "--workers", "0"]) == 0
    with open(out, encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["id", "label"]
    assert sorted(i for i, _ in lines[1:]) == ["0", "0", "0", "1", "1", "1"]
    assert {label for _, label in lines[1:]} <= {"green", "red", "곰팡이"}
    assert not stale.exists()  # no errors this time: the old errors file does not linger


def test_extra_classes_are_scored_through_the_descriptions(run_dir: Path, train_images: Path, tmp_path: Path, capsys):
    extra = tmp_path / "extra.yaml"
    # "scarlet" has red's description, so it must score exactly like red; "violet" is new
    extra.write_text("scarlet: a red square\nviolet: [a violet square, purple noise]\n", encoding="utf-8")
    out = tmp_path / "open.csv"
    image = train_images / "red" / "0.jpg"
    assert (
        predict.main(
            [
                str(run_dir),
                str(image),
                "--out",
                str(out),
                "--extra-classes",
                str(extra),
                "--top-k",
                "5",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "scores every class by description similarity (--scorer text)" in capsys.readouterr().err
    row = read_csv(out)[0]
    tops = {row[f"top{i}"]: float(row[f"top{i}_probability"]) for i in range(1, 6)}
    assert set(tops) == {"green", "red", "곰팡이", "scarlet", "violet"}
    assert tops["scarlet"] == pytest.approx(tops["red"], abs=1e-5)  # a predictable class, like red
    from clipcls.data.descriptions import read_descriptions
    from clipcls.inference.trained_model import load_trained

    predictor = Predictor(load_trained(run_dir), extra_descriptions=read_descriptions(extra))
    result = predictor.predict([str(image)])
    assert result.scorer == "text" and result.class_names == ["green", "red", "곰팡이", "scarlet", "violet"]
    assert result.text_logits.shape == (1, 5) and result.head_logits.shape == (1, 3)
    assert result.text_logits[0, 3] == pytest.approx(result.text_logits[0, 1], abs=1e-5)


def test_extra_class_clashing_with_a_trained_class(run_dir: Path, train_images: Path, tmp_path: Path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text("red: a crimson square\n", encoding="utf-8")
    out = tmp_path / "x.csv"
    assert (
        predict.main([str(run_dir), str(train_images / "red"), "--out", str(out), "--extra-classes", str(extra)])
        == EXIT_ERROR
    )
    assert "extra classes already known to the model: ['red']" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing_folder"], "input not found: missing_folder"),
        (["nothing*.jpg"], "no files match 'nothing*.jpg'"),
        (["TEXT_ONLY"], "no image files found in"),
        (["IMAGES", "--top-k", "0"], "--top-k must be >= 1, got 0"),
        (["IMAGES", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ],
)
def test_usage_errors_exit_2(run_dir: Path, tmp_path: Path, train_images: Path, capsys, args, message):
    (tmp_path / "text_only").mkdir()
    (tmp_path / "text_only" / "readme.txt").write_text("hi")
    args = [{"TEXT_ONLY": str(tmp_path / "text_only"), "IMAGES": str(train_images)}.get(a, a) for a in args]
    out = tmp_path / "out.csv"
    assert predict.main([str(run_dir), *args, "--out", str(out)]) == EXIT_ERROR
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unloadable_model_exits_2(tmp_path: Path, train_images: Path, capsys):
    assert predict.main([str(tmp_path), str(train_images), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no checkpoint found at" in capsys.readouterr().err


def test_help_documents_the_exit_status(capsys):
    assert predict.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Exit status:" in text and "1  some files were unreadable" in text


def test_interrupted_run_leaves_no_csv(run_dir: Path, train_images: Path, tmp_path: Path, monkeypatch):
    calls = []

    def fail_on_second_batch(self, pixels):
        calls.append(len(pixels))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(self, pixels)

    original = Predictor.logits
    monkeypatch.setattr(Predictor, "logits", fail_on_second_batch)
    out = tmp_path / "p.csv"
    with pytest.raises(RuntimeError, match="killed"):
        predict.main([str(run_dir), str(train_images), "--out", str(out), "--batch-size", "4", "--workers", "0"])
    assert list(tmp_path.iterdir()) == []  # neither the CSV, its errors file, nor a temporary file


def test_a_failed_run_keeps_the_previous_csv_intact(run_dir: Path, train_images: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "p.csv"
    errors = tmp_path / "p.csv.errors.csv"
    out.write_text("path,prediction\nold.jpg,red\n", encoding="utf-8")
    errors.write_text("path,error\nold.png,broken\n", encoding="utf-8")

    def fail_on_second_batch(self, pixels, calls=[]):  # noqa: B006 - counts calls across batches
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(self, pixels)

    original = Predictor.logits
    monkeypatch.setattr(Predictor, "logits", fail_on_second_batch)
    with pytest.raises(RuntimeError, match="killed"):
        predict.main([str(run_dir), str(train_images), "--out", str(out), "--batch-size", "4", "--workers", "0"])
    assert out.read_text(encoding="utf-8") == "path,prediction\nold.jpg,red\n"
    assert errors.read_text(encoding="utf-8") == "path,error\nold.png,broken\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.csv.errors.csv"]  # no temporary left


def test_api_accepts_paths_and_pil_images(run_dir: Path, train_images: Path):
    path = train_images / "green" / "2.jpg"
    rgba = load_image(path).convert("RGBA")  # an in-memory image goes through load_image's RGB rules
    predictor = load_predictor(run_dir)
    result = predictor.predict([str(path), load_image(path), rgba], batch_size=2)
    assert result.probabilities.shape == (3, 3) and len(result.labels) == 3
    np.testing.assert_allclose(result.head_logits[1], result.head_logits[0], atol=1e-5)
    np.testing.assert_allclose(result.text_logits[2], result.text_logits[0], atol=1e-5)
    with pytest.raises(ImageLoadError, match="cannot load image .*nope.jpg"):
        predictor.predict([str(train_images / "nope.jpg")])
