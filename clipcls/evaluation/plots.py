"""Pictures of metrics (matplotlib): confusion and similarity matrices, and the confusion CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from clipcls.io import atomic_open


def _use_font_covering(texts: list[str]) -> None:
    """Pick an installed font that has glyphs for every class name (Hangul, CJK...)."""
    import matplotlib
    from matplotlib import font_manager

    needed = {ch for text in texts for ch in text if ord(ch) > 0x2FF}
    if not needed:
        return
    for font in font_manager.fontManager.ttflist:
        if "LastResort" in font.fname:  # maps every code point to a box glyph: never a real cover
            continue
        try:
            from matplotlib.ft2font import FT2Font

            charmap = FT2Font(font.fname).get_charmap()
        except (OSError, RuntimeError):
            continue
        if all(ord(ch) in charmap for ch in needed):
            matplotlib.rcParams["font.family"] = [font.name, "DejaVu Sans"]
            return


def plot_confusion(
    matrix: np.ndarray, class_names: list[str], path: str | Path, title: str = "Confusion matrix"
) -> None:
    """Row-normalised confusion matrix with counts, class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _use_font_covering(class_names)
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = max(5.0, 0.55 * len(class_names) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black"
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    with atomic_open(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)


def write_confusion_csv(matrix: np.ndarray, class_names: list[str], path: str | Path) -> None:
    """Confusion counts as CSV: a header row of predicted classes, one row per true class (UTF-8)."""
    with atomic_open(path) as stream:
        writer = csv.writer(stream)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, np.asarray(matrix).tolist()):
            writer.writerow([name, *row])


def plot_similarity(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str) -> None:
    """A symmetric class-by-class similarity matrix (cosines) with its values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _use_font_covering(class_names)
    matrix = np.asarray(matrix, dtype=float)
    off_diagonal = matrix[~np.eye(len(matrix), dtype=bool)]
    # the colour scale spans the off-diagonal range: description cosines often all sit in 0.8-1
    low = float(off_diagonal.min()) if off_diagonal.size else 0.0
    low = min(low, 0.999)
    side = max(5.0, 0.55 * len(class_names) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(matrix, cmap="magma", vmin=low, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_title(title)
    if len(class_names) <= 25:  # beyond that the numbers no longer fit their cells
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if (value - low) / (1 - low) > 0.6 else "white",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    fig.tight_layout()
    with atomic_open(path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=110)
    plt.close(fig)
