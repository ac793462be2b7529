"""`clipcls evaluate` and `clipcls zeroshot` on a tiny model trained once for the module."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from clipcls.commands.evaluate import main as evaluate_main
from clipcls.commands.zeroshot import main as zeroshot_main
from tests.conftest import make_folder, train_tiny_run

MODEL_ORDER = ["green", "red", "곰팡이"]  # sorted folder names: the order training saves


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One trained run (tiny CLIP, 32 px, one epoch) shared by every test of the module."""
    return train_tiny_run(tmp_path_factory.mktemp("evalrun"))


@pytest.fixture(scope="module")
def noisy_folder(tmp_path_factory) -> Path:
    """Random-noise images under the model's class names: predictions are a mix of right and
    wrong, so the metrics are not all 0 or 1. Classes are created in reverse order on purpose,
    and one picture is corrupt."""
    root = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(3)
    for name in reversed(MODEL_ORDER):
        (root / name).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def independent_logits(run_dir: Path, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head and text logits and labels computed without the evaluate code path: images loaded
    one by one in model class order, one forward pass."""
    from clipcls.data.transforms import build_transform
    from clipcls.inference.trained_model import load_trained

    model = load_trained(run_dir)
    transform = build_transform(model.image_size, model.image_mean, model.image_std, "none")
    pixels, labels = [], []
    for label, name in enumerate(model.class_names):
        for path in sorted((folder / name).glob("*.png")):
            with Image.open(path) as image:
                pixels.append(transform(image.convert("RGB")))
            labels.append(label)
    with torch.no_grad():
        out = model.classifier.eval()(torch.stack(pixels))
    return out["head_logits"].numpy(), out["text_logits"].numpy(), np.array(labels)


@pytest.fixture(scope="module")
def noisy_eval(run_dir: Path, noisy_folder: Path, tmp_path_factory) -> tuple[Path, str]:
    """evaluate on the noisy folder, with its printed output."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("noisy_eval")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert evaluate_main([str(run_dir), "--data", str(noisy_folder), "--out", str(out), "--workers", "0"]) == 0
    return out, printed.getvalue()


def test_metrics_equal_sklearn_on_the_same_predictions(run_dir, noisy_folder, noisy_eval):
    out, printed = noisy_eval
    metrics = load_json(out / "metrics.json")
    head, text, targets = independent_logits(run_dir, noisy_folder)
    softmax = lambda x: np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)
    preds = {"head": head.argmax(1), "text": text.argmax(1), "ensemble": (softmax(head) + softmax(text)).argmax(1)}
    assert set(metrics["scorers"]) == {"head", "text", "ensemble"}
    assert metrics["num_images"] == 15 and metrics["class_names"] == MODEL_ORDER
    assert any(0 < metrics["scorers"][s]["accuracy"] < 1 for s in preds)  # a non-trivial check
    labels = [0, 1, 2]
    for scorer, pred in preds.items():
        got = metrics["scorers"][scorer]
        assert got["accuracy"] == pytest.approx(accuracy_score(targets, pred), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(
            f1_score(targets, pred, labels=labels, average="macro", zero_division=0), abs=1e-12
        )
        assert got["weighted_f1"] == pytest.approx(
            f1_score(targets, pred, labels=labels, average="weighted", zero_division=0), abs=1e-12
        )
        p, r, f, s = precision_recall_fscore_support(targets, pred, labels=labels, zero_division=0)
        for k, name in enumerate(MODEL_ORDER):
            assert got["per_class"][name] == pytest.approx(
                {"precision": p[k], "recall": r[k], "f1": f[k], "support": s[k]}
            )
        matrix = confusion_matrix(targets, pred, labels=labels)
        assert got["confusion_matrix"] == matrix.tolist()
        with open(out / f"confusion_matrix_{scorer}.csv", encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
        assert rows[0][1:] == MODEL_ORDER and [r[0] for r in rows[1:]] == MODEL_ORDER
        assert np.array(rows[1:])[:, 1:].astype(int).tolist() == matrix.tolist()
        assert f"\n{scorer} " in "\n" + printed  # one printed table row per scorer
    assert "macro F1" in printed and "weighted F1" in printed


def test_unreadable_image_is_skipped_and_listed(noisy_eval, noisy_folder):
    out, _ = noisy_eval
    metrics = load_json(out / "metrics.json")
    assert metrics["num_skipped"] == 1
    assert metrics["skipped_images"][0]["path"] == str(noisy_folder / "red" / "broken.jpg")
    assert metrics["skipped_images"][0]["error"]
    with open(out / "predictions.csv", encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 15 and all(Path(r["path"]).parent.name == r["true"] for r in rows)


def test_report_is_self_contained_with_images_and_class_names(noisy_eval):
    out, _ = noisy_eval
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in page
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") >= 3  # the three confusion matrices
    assert "data:image/jpeg;base64," in page  # misclassified thumbnails
    for name in MODEL_ORDER:
        assert name in page
    assert "broken.jpg" in page  # the skipped image is listed
    for scorer in ("head", "text", "ensemble"):
        with Image.open(out / f"confusion_matrix_{scorer}.png") as png:
            assert png.format == "PNG"


def test_folder_in_other_order_with_missing_class_keeps_trained_indices(run_dir, tmp_path, capsys):
    folder = tmp_path / "partial"
    for name in ("곰팡이", "red"):  # no "green"; created in non-sorted order
        shutil.copytree(Path(run_dir).parents[1] / "train" / name, folder / name)
    out = tmp_path / "eval"
    assert evaluate_main([str(run_dir), "--data", str(folder), "--out", str(out), "--workers", "0"]) == 0
    metrics = load_json(out / "metrics.json")
    assert metrics["missing_classes"] == ["green"] and metrics["class_names"] == MODEL_ORDER
    assert "green" in capsys.readouterr().err
    head = metrics["scorers"]["head"]
    assert head["per_class"]["green"]["support"] == 0
    assert head["per_class"]["red"]["support"] == 8 and head["per_class"]["곰팡이"]["support"] == 8
    assert head["confusion_matrix"][0] == [0, 0, 0]  # row "green": trained index 0, no images
    assert [sum(row) for row in head["confusion_matrix"]] == [0, 8, 8]
    assert "Model classes with no image" in (out / "report.html").read_text(encoding="utf-8")


def test_unknown_folder_class_is_an_error_naming_it(run_dir, tmp_path, capsys):
    folder = make_folder(tmp_path / "data", per_class=1)
    (folder / "blue").mkdir()
    Image.new("RGB", (24, 24), (0, 0, 255)).save(folder / "blue" / "0.jpg")
    assert evaluate_main([str(run_dir), "--data", str(folder), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "the model does not know: ['blue']" in err
    assert not (tmp_path / "eval").exists()


def test_default_data_is_the_runs_validation_split(run_dir):
    assert evaluate_main([str(run_dir), "--workers", "0"]) == 0
    metrics = load_json(run_dir / "eval" / "metrics.json")
    trained = load_json(run_dir / "metrics.json")  # training's own score of the same split
    assert metrics["num_images"] == trained["num_images"] == 5
    assert metrics["scorers"]["head"]["confusion_matrix"] == trained["confusion_matrix"]
    assert "validation split" in metrics["data"]
    page = (run_dir / "eval" / "report.html").read_text(encoding="utf-8")
    assert "Training curves" in page and (run_dir / "eval" / "training_curves.png").is_file()


def test_zeroshot_on_a_run_writes_the_description_report(run_dir, tmp_path, capsys):
    out = tmp_path / "zs"
    assert zeroshot_main([str(run_dir), "--out", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    report = load_json(out / "descriptions.json")
    sim = np.array(report["similarity"])
    assert report["class_names"] == MODEL_ORDER and sim.shape == (3, 3)
    np.testing.assert_allclose(sim, sim.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    assert len(report["most_similar"]) == 3  # every distinct pair of 3 classes
    assert report["most_similar"][0]["cosine"] == pytest.approx(max(sim[0, 1], sim[0, 2], sim[1, 2]))
    metrics = load_json(out / "metrics.json")
    # at the run's size (squashed) and with the checkpoint's own preprocessing (crop, native size)
    assert list(metrics["scorers"]) == ["zeroshot", "zeroshot_native"] and metrics["num_images"] == 5
    assert "centre crop at 64x64" in metrics["image_size"]
    matrix = np.array(metrics["scorers"]["zeroshot"]["confusion_matrix"])
    off = sorted((matrix[i, j] for i in range(3) for j in range(3) if i != j and matrix[i, j]), reverse=True)
    assert [c["count"] for c in report["most_confused"]] == off
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Description report" in page and "파란색 사각형" in page and "https://" not in page
    assert "zeroshot" in printed and "most similar descriptions" in printed


def test_zeroshot_from_flags_adds_description_only_classes(noisy_folder, tmp_path):
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text('green: green\nred: red\n"곰팡이": mould\nblue: a blue square\n', encoding="utf-8")
    out = tmp_path / "zs"
    argv = [
        "--model",
        "tiny",
        "--data",
        str(noisy_folder),
        "--descriptions",
        str(yaml_file),
        "--size",
        "32",
        "32",
        "--out",
        str(out),
        "--workers",
        "0",
    ]
    assert zeroshot_main(argv) == 0
    metrics = load_json(out / "metrics.json")
    assert metrics["class_names"] == MODEL_ORDER + ["blue"]  # folder classes first, then extra candidates
    assert metrics["missing_classes"] == ["blue"] and metrics["num_images"] == 15
    assert np.array(load_json(out / "descriptions.json")["similarity"]).shape == (4, 4)


def test_zeroshot_folder_without_description_is_an_error(noisy_folder, tmp_path, capsys):
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text("green: green\nred: red\n", encoding="utf-8")
    argv = ["--model", "tiny", "--data", str(noisy_folder), "--descriptions", str(yaml_file)]
    assert zeroshot_main(argv) == 2
    assert "곰팡이" in capsys.readouterr().err


def test_wise_alpha_sweep_tabulates_each_alpha(run_dir, tmp_path):
    out = tmp_path / "eval"
    assert evaluate_main([str(run_dir), "--out", str(out), "--workers", "0", "--wise-alpha", "0", "1"]) == 0
    metrics = load_json(out / "metrics.json")
    assert list(metrics["wise_ft"]) == ["0", "1"]
    for scorer, full in metrics["scorers"].items():  # alpha 1 is the fine-tune itself
        assert metrics["wise_ft"]["1"][scorer]["macro_f1"] == pytest.approx(full["macro_f1"])
    assert "WiSE-FT" in (out / "report.html").read_text(encoding="utf-8")
    # alpha 0 is the original CLIP: its description scorer is the zero-shot baseline, same split
    assert zeroshot_main([str(run_dir), "--out", str(tmp_path / "zs"), "--workers", "0"]) == 0
    zeroshot = load_json(tmp_path / "zs" / "metrics.json")["scorers"]["zeroshot"]
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert metrics["wise_ft"]["0"]["text"][key] == pytest.approx(zeroshot[key])
