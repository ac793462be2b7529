"""Issue 13, item 9: plots stay bounded in time, memory and size for 1,000 classes, and Korean
class names are drawn with a CJK font when one is installed, else with one warning naming it."""

from __future__ import annotations

import logging
import time
import tracemalloc
import warnings

import numpy as np
from PIL import Image

from clipcls.evaluation import plots


def test_a_thousand_class_confusion_matrix_is_bounded(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"class_{i:04d}" for i in range(1000)]
    matrix = np.diag(rng.integers(5, 20, 1000)) + (rng.random((1000, 1000)) < 0.002)
    tracemalloc.start()
    start = time.perf_counter()
    plots.plot_confusion(matrix, classes, tmp_path / "cm.png")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    width, height = Image.open(tmp_path / "cm.png").size
    assert width <= 2000 and height <= 2000  # 300 classes made 18k x 18k before
    assert seconds < 30 and peak < 500 * 2**20, (seconds, peak / 2**20)
    plots.write_confusion_csv(matrix, classes, tmp_path / "cm.csv")  # every count stays in the CSV
    lines = (tmp_path / "cm.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1001 and lines[1].split(",")[1] == str(matrix[0, 0])


def test_korean_class_names_get_a_cjk_font_or_one_warning(tmp_path, caplog):
    names = ["곰팡이", "얼룩", "red"]
    needed = frozenset("곰팡이얼룩")
    font = plots._font_covering(needed)
    plots._warn_missing_font.cache_clear()
    caplog.set_level(logging.WARNING, logger="clipcls")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a.png", "b.png"):
            plots.plot_confusion(np.eye(3, dtype=int) * 4, names, tmp_path / name)
        plots.plot_similarity(np.eye(3), names, tmp_path / "s.png", "similarity")
    assert not [w for w in caught if "Glyph" in str(w.message)]  # none per glyph
    missing = [r for r in caplog.records if "no installed font has glyphs" in r.getMessage()]
    if font is None:
        assert len(missing) == 1 and "fonts-noto-cjk" in missing[0].getMessage()
    else:
        assert not missing
