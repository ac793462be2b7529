"""Pictures of metrics (matplotlib): confusion and similarity matrices, and the confusion CSV."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from clipcls.csv_writer import csv_writer
from clipcls.io import atomic_open

log = logging.getLogger("clipcls")
MAX_SIDE_INCHES = 16.0  # at 110 dpi at most ~1,800 pixels a side, whatever the class count
MAX_CELL_LABELS = 40  # classes up to which each cell shows its number
MAX_TICK_LABELS = 80  # classes up to which the axes name them (beyond: see the CSV)
CJK_FONT_PACKAGES = "fonts-noto-cjk (Debian/Ubuntu: apt-get install fonts-noto-cjk; Fedora: google-noto-sans-cjk-fonts)"


@lru_cache(maxsize=16)
def _font_covering(needed: frozenset[str]) -> str | None:
    """The name of an installed font that has a glyph for every character in `needed`."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    for font in font_manager.fontManager.ttflist:
        if "LastResort" in font.fname:  # maps every code point to a box glyph: never a real cover
            continue
        try:
            charmap = FT2Font(font.fname).get_charmap()
        except (OSError, RuntimeError):
            continue
        if all(ord(ch) in charmap for ch in needed):
            return font.name
    return None


@lru_cache(maxsize=16)
def _warn_missing_font(needed: frozenset[str]) -> None:
    """Once per process and set of characters, not once per glyph and plot."""
    sample = "".join(sorted(needed)[:12])
    log.warning("no installed font has glyphs for %s: class names show as boxes; install %s", sample, CJK_FONT_PACKAGES)


@contextlib.contextmanager
def _font_covering_names(texts: list[str]) -> Iterator[None]:
    """Draw with an installed font that has glyphs for every class name (Hangul, CJK...); without
    one, warn once (naming the package to install) instead of matplotlib's warning per glyph."""
    import matplotlib

    needed = frozenset(ch for text in texts for ch in text if ord(ch) > 0x2FF)
    font = _font_covering(needed) if needed else None
    if needed and font is None:
        _warn_missing_font(needed)
    family = [font, "DejaVu Sans"] if font else matplotlib.rcParams["font.family"]
    with matplotlib.rc_context({"font.family": family}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        yield


def _figure_side(classes: int) -> float:
    return min(MAX_SIDE_INCHES, max(5.0, 0.55 * classes + 2.5))


def _class_ticks(ax, class_names: list[str]) -> None:
    """Name the classes on both axes while they fit; beyond that, number them."""
    if len(class_names) > MAX_TICK_LABELS:
        ax.set_xlabel(ax.get_xlabel() + f" (classes 0-{len(class_names) - 1} in class order)")
        return
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)


def plot_confusion(
    matrix: np.ndarray, class_names: list[str], path: str | Path, title: str = "Confusion matrix"
) -> None:
    """Row-normalised confusion matrix with counts, class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = _figure_side(len(class_names))
    with _font_covering_names(class_names):
        fig, ax = plt.subplots(figsize=(side + 1, side))
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        _class_ticks(ax, class_names)
        ax.set_title(title)
        if len(class_names) <= MAX_CELL_LABELS:
            for (i, j), count in np.ndenumerate(matrix):
                if count:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        fig.tight_layout()
        with atomic_open(path, "wb") as stream:
            fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)


def write_confusion_csv(matrix: np.ndarray, class_names: list[str], path: str | Path) -> None:
    """Confusion counts as CSV: a header row of predicted classes, one row per true class (UTF-8)."""
    with atomic_open(path) as stream:
        writer = csv_writer(stream)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, np.asarray(matrix).tolist()):
            writer.writerow([name, *row])


def plot_similarity(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str) -> None:
    """A symmetric class-by-class similarity matrix (cosines) with its values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    off_diagonal = matrix[~np.eye(len(matrix), dtype=bool)]
    # the colour scale spans the off-diagonal range: description cosines often all sit in 0.8-1
    low = float(off_diagonal.min()) if off_diagonal.size else 0.0
    low = min(low, 0.999)
    side = _figure_side(len(class_names))
    with _font_covering_names(class_names):
        fig, ax = plt.subplots(figsize=(side + 1, side))
        image = ax.imshow(matrix, cmap="magma", vmin=low, vmax=1, interpolation="nearest")
        _class_ticks(ax, class_names)
        ax.set_title(title)
        if len(class_names) <= 25:  # beyond that the numbers no longer fit their cells
            for (i, j), value in np.ndenumerate(matrix):
                colour = "black" if (value - low) / (1 - low) > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
        fig.tight_layout()
        with atomic_open(path, "wb") as stream:
            fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
