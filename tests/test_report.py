"""report.html: self-contained, escaped, capped thumbnail grid, curves; rendered by Chromium if present."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcls.evaluation.metrics import classification_metrics
from clipcls.evaluation.plots import plot_confusion
from clipcls.evaluation.report import MAX_MISCLASSIFIED, read_curves, write_report

NAMES = ["<b>&ok", "곰팡이", "red"]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.sh"


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    targets = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 2, 2, 0])
    metrics = classification_metrics(targets, preds, NAMES)
    png = tmp_path / "cm.png"
    plot_confusion(metrics["confusion_matrix"], NAMES, png)
    image = tmp_path / "img.jpg"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(image)
    curves = tmp_path / "metrics.csv"
    curves.write_text(
        "epoch,step,train/loss,val/loss,val/macro_f1,lr-AdamW\n"
        "0,0,1.5,,,0.001\n0,1,1.2,,,0.0009\n0,1,,1.1,0.4,\n1,3,0.8,,,0.0005\n1,3,,0.9,0.7,\n",
        encoding="utf-8",
    )
    return {"metrics": {"head": metrics, "text": metrics}, "png": png, "image": image, "curves": curves}


def write(tmp_path: Path, inputs: dict, misclassified: list, curves=None) -> str:
    path = write_report(
        tmp_path / "out",
        "Report <title>",
        inputs["metrics"],
        NAMES,
        {"head": inputs["png"], "text": inputs["png"]},
        misclassified,
        curves,
    )
    assert path == tmp_path / "out" / "report.html"
    return path.read_text(encoding="utf-8")


def test_names_are_escaped_and_unicode_kept(tmp_path, inputs):
    page = write(tmp_path, inputs, [])
    assert "&lt;b&gt;&amp;ok" in page and "<b>&ok" not in page
    assert "Report &lt;title&gt;" in page and "곰팡이" in page and '<meta charset="utf-8">' in page
    assert "No misclassified images." in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_misclassified_grid_is_capped_and_most_confident_first(tmp_path, inputs):
    wrong = [(inputs["image"], "red", "곰팡이", p) for p in np.linspace(0.3, 0.9, 60)]
    wrong.append((tmp_path / "missing.jpg", "red", "곰팡이", 0.95))  # unreadable: shown as text
    page = write(tmp_path, inputs, wrong)
    probabilities = [float(p) for p in re.findall(r"\(([0-9.]+)\)</span>", page)]
    assert len(probabilities) == MAX_MISCLASSIFIED
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] == 0.95
    assert page.count("data:image/jpeg;base64,") == MAX_MISCLASSIFIED - 1
    assert "61 misclassified" in page and "(unreadable)" in page
    thumb = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(thumb))) as image:
        assert max(image.size) == 128  # a thumbnail, not the 300 px original


def test_training_curves_are_plotted_from_the_csv_logger_file(tmp_path, inputs):
    series = read_curves(inputs["curves"])
    assert series["val/macro_f1"] == [(1.0, 0.4), (3.0, 0.7)] and len(series["train/loss"]) == 3
    page = write(tmp_path, inputs, [], curves=inputs["curves"])
    assert "Training curves" in page and (tmp_path / "out" / "training_curves.png").is_file()
    assert page.count("data:image/png;base64,") == 3  # two confusion matrices + curves
    assert "Training curves" not in write(tmp_path, inputs, [], curves=None)


def test_report_renders_in_headless_chromium(tmp_path, inputs):
    """CI installs Debian's chromium (.ci/run) and must run this; elsewhere it may skip."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium is not installed: .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium) - render check skipped")
    page = tmp_path / "out" / "report.html"
    write(tmp_path, inputs, [(inputs["image"], "red", "곰팡이", 0.8)], curves=inputs["curves"])
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(page), str(shot), "1000,4000"], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    with Image.open(shot) as image:
        assert image.size == (1000, 4000)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # a blank page would be a single colour; a rendered report has tables and plots
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # the confusion matrices: the darkest blues of matplotlib's "Blues" (the diagonal's 50 %+)
    confusion = (blue > 100) & (red < 60) & (blue - red > 60)
    assert confusion.sum() > 2 * 1500, "no confusion matrix in the screenshot"
    # the misclassified grid: the (200, 30, 30) image's thumbnail, 128 x 85 pixels
    thumbnail = (abs(red - 200) < 25) & (green < 60) & (blue < 60)
    assert thumbnail.sum() > 0.8 * 128 * 85, "no misclassified thumbnail in the screenshot"
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "checked.png")
