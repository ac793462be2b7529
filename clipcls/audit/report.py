"""Write an audit: audit.json (findings, tables, facts), one ranked CSV per check, and audit.html,
self-contained like the evaluation's report.html (thumbnails embedded, no script, no external
file). Every file goes through the atomic writer: a failed audit leaves the previous one whole."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipcls.evaluation.report import CSS, html_table, thumbnail_uri
from clipcls.io import atomic_open, atomic_write_text, write_json

JSON_ROWS = 200  # rows of each table kept in audit.json; the CSVs hold them all
HTML_THUMBNAILS = 24  # rows of a table shown with thumbnails in audit.html
CSVS = {  # table -> file
    "label_issues": "label_issues.csv",
    "label_quality": "label_quality.csv",
    "duplicates": "duplicates.csv",
    "files": "files.csv",
    "classes": "classes.csv",
    "zeroshot_recall": "descriptions.csv",
}
EXTRA_CSS = (
    ".sev-severe { color: #b42318; font-weight: 600; } .sev-warning { color: #b54708; }"
    " .pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: .8rem; }"
    " .pair { display: flex; flex-wrap: wrap; gap: .4rem; }"
)


def write_csv(rows: Sequence[dict[str, Any]], path: Path, columns: Sequence[str] | None = None) -> None:
    """One CSV of dict rows, header first, written atomically through the shared writer (which
    neutralises cells a spreadsheet would run as formulas: file and class names are user data)."""
    from clipcls.csv_writer import csv_writer

    columns = list(columns or (rows[0].keys() if rows else ["none"]))
    with atomic_open(path, "w") as stream:
        writer = csv_writer(stream)
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])


def write_audit(audit, out: Path, title: str) -> dict[str, Path]:
    """audit.json, the CSVs and audit.html in `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for table, name in CSVS.items():
        if table in audit.tables:
            write_csv(audit.tables[table], out / name)
            written[table] = out / name
    summary = {s: audit.count(s) for s in ("severe", "warning", "info")}
    write_json(
        {
            "summary": summary,
            "facts": audit.facts,
            "class_names": audit.class_names,
            "findings": audit.findings,
            "tables": {k: _jsonable(v[:JSON_ROWS]) for k, v in audit.tables.items()},
            "table_sizes": {k: len(v) for k, v in audit.tables.items()},
            "description_similarity": None if audit.similarity is None else audit.similarity.round(4).tolist(),
        },
        out / "audit.json",
    )
    written["json"] = out / "audit.json"
    atomic_write_text(_page(audit, title, summary), out / "audit.html")
    written["html"] = out / "audit.html"
    return written


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as strict JSON: nan (a class without images) becomes null."""
    return [{k: _json_value(v) for k, v in r.items()} for r in rows]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _findings(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "<p>No findings.</p>"
    order = {"severe": 0, "warning": 1, "info": 2}
    items = sorted(findings, key=lambda f: order[f["severity"]])
    lines = "".join(
        f'<tr><td class="name sev-{f["severity"]}">{_esc(f["severity"])}</td><td class="name">{_esc(f["check"])}</td>'
        f'<td class="name">{_esc(f["message"])}</td></tr>'
        for f in items
    )
    head = "".join(f'<th class="name">{h}</th>' for h in ("severity", "check", "finding"))
    return f"<table><tr>{head}</tr>{lines}</table>"


def _thumb(path: str) -> str:
    uri = thumbnail_uri(path)
    return f'<img alt="{_esc(Path(path).name)}" src="{uri}">' if uri else "<p>(unreadable)</p>"


def _label_grid(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>None flagged.</p>"
    figures = "".join(
        f'<figure title="{_esc(r["path"])}">{_thumb(r["path"])}'
        f"<figcaption>#{r['rank']} folder: <b>{_esc(r['class'])}</b>"
        f'<br><span class="wrong">looks like: <b>{_esc(r["suggested"])}</b></span> (quality {r["label_quality"]:.3f})'
        f"<br>{_esc(Path(r['path']).name)}</figcaption></figure>"
        for r in rows[:HTML_THUMBNAILS]
    )
    shown = min(len(rows), HTML_THUMBNAILS)
    note = (
        f"{len(rows)} flagged; the {shown} most likely wrong shown (all in label_issues.csv; "
        "every image by score in label_quality.csv)."
    )
    return f'<p class="note">{note}</p><div class="grid">{figures}</div>'


def _duplicate_grid(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>None found.</p>"
    parts = []
    for r in rows[:HTML_THUMBNAILS]:
        score = "identical bytes" if r["kind"] == "exact" else f"hash {r['phash_bits']} bits, cosine {r['cosine']}"
        parts.append(
            f'<div class="pair"><figure title="{_esc(r["path_a"])}">{_thumb(r["path_a"])}<figcaption>'
            f"{_esc(r['split_a'])}/{_esc(r['class_a'])}<br>{_esc(Path(r['path_a']).name)}</figcaption></figure>"
            f'<figure title="{_esc(r["path_b"])}">{_thumb(r["path_b"])}<figcaption>'
            f"{_esc(r['split_b'])}/{_esc(r['class_b'])}<br>{_esc(Path(r['path_b']).name)}</figcaption></figure>"
            f'<p class="note"><b>{_esc(r["where"])}</b>, {_esc(r["kind"])}: {_esc(score)}</p></div>'
        )
    note = (
        f"{len(rows)} pairs; leakage first, the first {min(len(rows), HTML_THUMBNAILS)} shown (all in duplicates.csv)."
    )
    return f'<p class="note">{note}</p><div class="pairs">{"".join(parts)}</div>'


def _descriptions(audit) -> str:
    if "zeroshot_recall" not in audit.tables:
        return "<p>No description file given (--descriptions): not checked.</p>"
    recall = html_table(
        audit.tables["zeroshot_recall"],
        [("class", "class", "s"), ("images", "images", "d"), ("recall", "zero-shot recall", ".3f"),
         ("most_mistaken_for", "most mistaken for", "s")],
    )  # fmt: skip
    pairs = html_table(
        audit.tables.get("description_pairs", []),
        [("a", "class", "s"), ("b", "class", "s"), ("cosine", "cosine", ".3f")],
    )
    long = html_table(
        audit.tables.get("long_descriptions", []),
        [
            ("class", "class", "s"),
            ("tokens", "tokens", "d"),
            ("limit", "limit", "d"),
            ("description", "description", "s"),
        ],
    )
    return (
        f"<h3>Zero-shot recall per class (descriptions alone)</h3>{recall}"
        f"<h3>Most similar class descriptions</h3>{pairs}<h3>Over the token limit</h3>{long}"
    )


def _page(audit, title: str, summary: dict[str, int]) -> str:
    classes = html_table(
        audit.tables.get("classes", []),
        [("split", "split", "s"), ("class", "class", "s"), ("files", "files", "d"), ("readable", "readable", "d")],
    )
    files = html_table(
        audit.tables.get("files", [])[:JSON_ROWS],
        [("problem", "problem", "s"), ("path", "file", "s"), ("value", "value", "s"), ("detail", "detail", "s")],
    )
    sections = [
        ("Findings", _findings(audit.findings)),
        ("Likely label errors", _label_grid(audit.tables.get("label_issues", []))),
        ("Duplicates and leakage", _duplicate_grid(audit.tables.get("duplicates", []))),
        ("Classes", classes),
        ("Problem files", files),
        ("Descriptions", _descriptions(audit)),
    ]
    facts = {"findings": ", ".join(f"{v} {k}" for k, v in summary.items()), **audit.facts}
    facts_html = "".join(f'<div class="facts"><b>{_esc(k)}:</b> {_esc(v)}</div>' for k, v in facts.items())
    body = "".join(f"<section><h2>{_esc(h)}</h2>{content}</section>" for h, content in sections)
    css = CSS + EXTRA_CSS
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{css}</style></head>"
        f"<body><h1>{_esc(title)}</h1>{facts_html}{body}</body></html>\n"
    )
