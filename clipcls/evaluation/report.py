"""A self-contained HTML report of an evaluation: metrics, confusion, curves and the mistakes.

Self-contained means one file that opens anywhere, offline and forever: every picture is
embedded as a base64 data URI, there is no script and no external style sheet or font.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clipcls.io import atomic_open, atomic_write_text

MAX_MISCLASSIFIED = 48  # thumbnails in the grid; enough to see patterns, small enough to load fast
THUMBNAIL_PX = 128

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK KR", sans-serif;
       margin: 2rem auto; max-width: 1180px; padding: 0 1rem; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #d8dde6; padding-bottom: .25rem; } h3 { font-size: 1rem; margin-top: 1.2rem; }
.facts { color: #4b5565; font-size: .9rem; } .facts b { color: #1d2430; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border: 1px solid #d8dde6; padding: .25rem .6rem; text-align: right; }
th { background: #f2f4f8; } td.name, th.name { text-align: left; }
td.low { background: #fde2e1; } td.mid { background: #fff3d6; } td.best { font-weight: 600; }
img.plot { max-width: 100%; height: auto; border: 1px solid #e4e7ee; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: .6rem; }
figure { margin: 0; font-size: .78rem; } figure img { width: 128px; height: 128px; object-fit: contain;
         background: #f2f4f8; border: 1px solid #e4e7ee; display: block; }
figcaption { margin-top: .2rem; word-break: break-word; } .wrong { color: #b42318; }
details { margin: .5rem 0; } summary { cursor: pointer; color: #35507a; }
.note { color: #4b5565; font-size: .85rem; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    """Bytes as a `data:` URI, so the picture travels inside the HTML file."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_img(path: str | Path, alt: str) -> str:
    """An <img> holding a PNG file's bytes."""
    return f'<img class="plot" alt="{_esc(alt)}" src="{data_uri(Path(path).read_bytes(), "image/png")}">'


def thumbnail_uri(path: str | Path, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of an image file as a data URI; None if the file cannot be read."""
    from clipcls.data.images import ImageLoadError, load_image  # Pillow only: no torch

    try:
        image = load_image(path, draft_size=(size, size))
    except ImageLoadError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return data_uri(buffer.getvalue(), "image/jpeg")


def html_table(items: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """An HTML table of dicts, one row each; `columns` are (key, header, format), where format "s"
    is left-aligned text and anything else a number format such as ".4f"."""
    head = "".join(f'<th class="name">{_esc(h)}</th>' if f == "s" else f"<th>{_esc(h)}</th>" for _, h, f in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="name">{_esc(item[k])}</td>' if f == "s" else f"<td>{item[k]:{f}}</td>" for k, _, f in columns
        )
        + "</tr>"
        for item in items
    )
    return f"<table><tr>{head}</tr>{body}</table>" if items else "<p>None.</p>"


def _headline(metrics_by_scorer: Mapping[str, Mapping[str, Any]]) -> str:
    keys = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"))
    best = {k: max(m[k] for m in metrics_by_scorer.values()) for k, _ in keys}
    rows = []
    for scorer, m in metrics_by_scorer.items():
        cells = "".join(f'<td class="{"best" if m[k] == best[k] else ""}">{m[k]:.4f}</td>' for k, _ in keys)
        rows.append(f'<tr><td class="name">{_esc(scorer)}</td>{cells}<td>{m["num_images"]}</td></tr>')
    head = "".join(f"<th>{label}</th>" for _, label in keys)
    return f'<table><tr><th class="name">scorer</th>{head}<th>images</th></tr>{"".join(rows)}</table>'


def _f1_class(f1: float) -> str:
    return "low" if f1 < 0.5 else "mid" if f1 < 0.8 else ""


def _per_class(metrics_by_scorer: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    scorers = list(metrics_by_scorer)
    top = "".join(f'<th colspan="3">{_esc(s)}</th>' for s in scorers)
    sub = "<th>precision</th><th>recall</th><th>F1</th>" * len(scorers)
    rows = []
    for name in class_names:
        stats = [metrics_by_scorer[s]["per_class"][name] for s in scorers]
        cells = "".join(
            f"<td>{c['precision']:.3f}</td><td>{c['recall']:.3f}</td>"
            f'<td class="{_f1_class(c["f1"])}">{c["f1"]:.3f}</td>'
            for c in stats
        )
        rows.append(f'<tr><td class="name">{_esc(name)}</td><td>{stats[0]["support"]}</td>{cells}</tr>')
    return (
        f'<table><tr><th class="name" rowspan="2">class</th><th rowspan="2">images</th>{top}</tr>'
        f"<tr>{sub}</tr>{''.join(rows)}</table>"
        '<p class="note">F1 below 0.5 is shaded red, below 0.8 yellow.</p>'
    )


def _confusions(confusion_png_paths: Mapping[str, str | Path]) -> str:
    """The first scorer's matrix shown, the others folded away (one click to open)."""
    parts = []
    for i, (scorer, path) in enumerate(confusion_png_paths.items()):
        image = png_img(path, f"confusion matrix ({scorer})")
        if i == 0:
            parts.append(f"<p><b>{_esc(scorer)}</b></p>{image}")
        else:
            parts.append(f"<details><summary>{_esc(scorer)}</summary>{image}</details>")
    return "".join(parts)


def _misclassified(misclassified: Sequence[tuple[str | Path, str, str, float]]) -> str:
    """The most confident mistakes first: those say most about the data or the descriptions."""
    if not misclassified:
        return "<p>No misclassified images.</p>"
    ordered = sorted(misclassified, key=lambda item: -item[3])
    figures = []
    for path, true, predicted, probability in ordered[:MAX_MISCLASSIFIED]:
        uri = thumbnail_uri(path)
        image = f'<img alt="{_esc(Path(path).name)}" src="{uri}">' if uri else "<p>(unreadable)</p>"
        figures.append(
            f'<figure title="{_esc(path)}">{image}<figcaption>true: <b>{_esc(true)}</b><br>'
            f'<span class="wrong">predicted: <b>{_esc(predicted)}</b> ({probability:.2f})</span><br>'
            f"{_esc(Path(path).name)}</figcaption></figure>"
        )
    shown = min(len(ordered), MAX_MISCLASSIFIED)
    note = f"{len(ordered)} misclassified; the {shown} most confident shown (probability of the predicted class)."
    return f'<p class="note">{note}</p><div class="grid">{"".join(figures)}</div>'


def read_curves(csv_path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning CSVLogger rows as column -> [(step, value)], blank cells dropped."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(csv_path, encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            try:
                step = float(row.get("step") or "nan")
            except ValueError:
                continue
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(step) and math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def _curve_panels(series: Mapping[str, list]) -> list[tuple[str, list[str]]]:
    """Which columns go in which panel: losses, validation scores, learning rate."""
    panels = [
        ("loss", [k for k in series if k.endswith("loss") or k in ("train/contrastive", "train/cross_entropy")]),
        ("validation score", [k for k in series if k.startswith("val/") and "loss" not in k and "/f1/" not in k]),
        ("learning rate", [k for k in series if k.startswith("lr-")]),
    ]
    return [(title, keys) for title, keys in panels if keys]


def plot_curves(csv_path: str | Path, out_path: str | Path) -> Path | None:
    """Training curves from the run's logs/metrics.csv as one PNG; None when nothing to plot."""
    series = read_curves(csv_path)
    panels = _curve_panels(series)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, values = zip(*series[key])
            # validation is logged once per epoch: markers make single points visible
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(out_path, "wb") as stream:
        fig.savefig(stream, format="png", dpi=100)
    plt.close(fig)
    return Path(out_path)


def _facts(facts: Mapping[str, Any]) -> str:
    return "".join(f'<div class="facts"><b>{_esc(k)}:</b> {_esc(v)}</div>' for k, v in facts.items())


def write_report(
    out_dir: str | Path,
    title: str,
    metrics_by_scorer: Mapping[str, Mapping[str, Any]],
    class_names: Sequence[str],
    confusion_png_paths: Mapping[str, str | Path],
    misclassified: Sequence[tuple[str | Path, str, str, float]],
    curves_csv: Path | None,
    extra_sections: Sequence[tuple[str, str]] = (),
    facts: Mapping[str, Any] | None = None,
    misclassified_scorer: str | None = None,
) -> Path:
    """Write `out_dir/report.html` and return its path.

    `metrics_by_scorer` maps scorer name -> `classification_metrics` output; `misclassified`
    holds (image path, true class, predicted class, predicted probability); `extra_sections`
    are (heading, HTML body) pairs appended as given (the caller escapes their text); `facts`
    are short key/value lines under the title (model, data, image counts).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        ("Headline metrics", _headline(metrics_by_scorer)),
        ("Per-class metrics", _per_class(metrics_by_scorer, class_names)),
        ("Confusion matrix", _confusions(confusion_png_paths)),
    ]
    if curves_csv is not None and Path(curves_csv).is_file():
        png = plot_curves(curves_csv, out_dir / "training_curves.png")
        if png is not None:
            sections.append(("Training curves", png_img(png, "training curves")))
    heading = "Misclassified images" + (f" ({misclassified_scorer})" if misclassified_scorer else "")
    sections.append((heading, _misclassified(misclassified)))
    sections += list(extra_sections)
    body = "".join(f"<section><h2>{_esc(h)}</h2>{content}</section>" for h, content in sections)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{_esc(title)}</h1>{_facts(facts or {})}{body}</body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(page, path)
    return path
