"""Zero-shot scoring: the baseline every fine-tune must beat, plus a report on the descriptions.

An un-fine-tuned CLIP scores each image by the cosine similarity of its embedding with each
class's (averaged) description embedding. Besides the usual metrics it writes which class
descriptions sit close together and which classes the model confuses, so the user knows which
descriptions to rewrite.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.audit.descriptions import TOP_PAIRS, most_similar, similarity_matrix  # noqa: F401 - shared with audit
from clipcls.evaluation.evaluation import EvaluateError, Evaluation

SCORER = "zeroshot"  # at the run's input size, squashed, as training feeds the model
NATIVE = "zeroshot_native"  # the checkpoint's own preprocessing: shortest side + centre crop, native size


def class_list(folder_classes: list[str], descriptions: dict[str, list[str]], source: str) -> list[str]:
    """The folder's classes in order, then classes known only from their description (extra
    candidates the images may be mistaken for). A folder class without description is an error."""
    lacking = [name for name in folder_classes if name not in descriptions]
    if lacking:
        raise EvaluateError(f"{source} has no description for the class folders {lacking}")
    return folder_classes + [name for name in descriptions if name not in folder_classes]


def build_zeroshot(model_name: str, class_names: list[str], descriptions: dict[str, list[str]]):
    """An un-trained ClipClassifier (its "text" scorer is zero-shot CLIP)."""
    from clipcls.model.classifier import build_classifier

    config = {"model_name": model_name, "head": "linear", "head_init": "zeroshot", "freeze_text": True}
    try:
        return build_classifier(config, class_names, descriptions).eval()
    except OSError as err:  # transformers' way of saying the name or directory holds no model
        raise EvaluateError(f"cannot load CLIP model {model_name!r}: {err}") from err


def most_confused(matrix: np.ndarray, similarity: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Off-diagonal confusion cells, largest count first: (true -> predicted) pairs."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1)
    cells = [
        (int(matrix[i, j]), i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j and matrix[i, j]
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {
            "true": class_names[i],
            "predicted": class_names[j],
            "count": count,
            "share_of_true": count / rows[i],
            "description_similarity": float(similarity[i, j]),
        }
        for count, i, j in cells[:TOP_PAIRS]
    ]


def description_report(ev: Evaluation, similarity: np.ndarray, descriptions: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "class_names": ev.class_names,
        "descriptions": descriptions,
        "similarity": similarity.tolist(),
        "most_confused": most_confused(ev.metrics[SCORER]["confusion_matrix"], similarity, ev.class_names),
        "most_similar": most_similar(similarity, ev.class_names),
    }


def description_section(report: dict[str, Any], png: Path) -> tuple[str, str]:
    from clipcls.evaluation.report import html_table as _rows
    from clipcls.evaluation.report import png_img

    confused = _rows(
        report["most_confused"],
        [
            ("true", "true class", "s"),
            ("predicted", "predicted as", "s"),
            ("count", "images", "d"),
            ("share_of_true", "share", ".2f"),
            ("description_similarity", "description cosine", ".3f"),
        ],
    )
    similar = _rows(report["most_similar"], [("a", "class", "s"), ("b", "class", "s"), ("cosine", "cosine", ".3f")])
    descs = "".join(
        f"<li><b>{html.escape(n)}</b>: {html.escape(' | '.join(d))}</li>" for n, d in report["descriptions"].items()
    )
    body = (
        '<p class="note">Pairs the model confuses, and pairs whose descriptions embed close together, are the '
        "first descriptions to rewrite: name what tells the classes apart.</p>"
        f"<h3>Most confused class pairs</h3>{confused}<h3>Most similar descriptions</h3>{similar}"
        f"<h3>Pairwise cosine similarity of the class descriptions</h3>{png_img(png, 'description similarity')}"
        f"<details><summary>descriptions</summary><ul>{descs}</ul></details>"
    )
    return "Description report", body
