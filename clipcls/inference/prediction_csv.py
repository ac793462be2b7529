"""Prediction CSVs, streamed: each batch's rows are written as soon as it is scored, so memory
stays flat however many images there are. Torch-free: it drives the torch Predictor and the ONNX
one (`clipcls.inference.onnx_predictor`) alike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from clipcls.csv_writer import csv_writer
from clipcls.data.index import PathTable

if TYPE_CHECKING:  # both import torch; the ONNX path must not
    from clipcls.data.dataset import Batch
    from clipcls.inference.predictor import Predictor

FORMATS = ("full", "submission")


def csv_header(fmt: str, top_k: int) -> list[str]:
    """Column names of the full or submission CSV."""
    if fmt == "submission":
        return ["id", "label"]
    tops = [col for i in range(1, top_k + 1) for col in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "probability", *tops, "verdict", "rule"]


def csv_rows(
    paths: list[str],
    probs: np.ndarray,
    names: list[str],
    fmt: str,
    top_k: int,
    decisions: tuple[list[str], list[str]] | None = None,
) -> list[list[Any]]:
    """One row per image: the best class and its (calibrated) probability, the top-k (sorted),
    then the verdict (a class or "uncertain") and the rule that decided it (`decisions`; the
    top class and "argmax" when None). A submission's label stays the top class."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    verdicts, rules = decisions or ([names[t[0]] for t in order], ["argmax"] * len(order))
    rows = []
    for path, p, top, verdict, rule in zip(paths, probs, order, verdicts, rules):
        if fmt == "submission":
            rows.append([Path(path).stem, names[top[0]]])
            continue
        tops = [v for c in top for v in (names[c], f"{p[c]:.6f}")]
        rows.append([path, names[top[0]], f"{p[top[0]]:.6f}", *tops, verdict, rule])
    return rows


@dataclass
class RunSummary:
    """What a predict run wrote: rows, unreadable/skipped files (the first few kept for stderr),
    and ids that occur more than once in a submission."""

    rows: int = 0
    errors: int = 0
    first_errors: list[tuple[str, str]] = field(default_factory=list)
    duplicate_ids: int = 0

    def add_error(self, writer: Any, path: str, reason: str) -> None:
        """One line of the errors CSV; the first ten are kept for the stderr summary."""
        writer.writerow([path, reason])
        self.errors += 1
        if len(self.first_errors) < 10:
            self.first_errors.append((path, reason))


def stream_predictions(
    predictor: Predictor,  # or an OnnxPredictor: the same preprocess/logits/probabilities
    loader: Iterable[Batch],  # or ArrayBatch (clipcls.data.array_batches)
    paths: PathTable,
    skipped: list[tuple[str, str]],
    out: TextIO,
    errors: TextIO,
    fmt: str,
    top_k: int,
) -> RunSummary:
    """Score batch after batch, writing rows (and error lines) as each batch finishes."""
    writer, error_writer = csv_writer(out), csv_writer(errors)
    writer.writerow(csv_header(fmt, top_k))
    error_writer.writerow(["path", "error"])
    summary, seen_ids = RunSummary(), set()
    for path, reason in skipped:
        summary.add_error(error_writer, path, reason)
    for batch in loader:
        for position, reason in batch.failures:
            summary.add_error(error_writer, paths[position], reason)
        if batch.pixels is None:
            continue
        probs = predictor.probabilities(predictor.logits(batch.pixels))
        decisions = predictor.decide(probs)
        rows = csv_rows([paths[int(i)] for i in batch.positions], probs, predictor.class_names, fmt, top_k, decisions)
        writer.writerows(rows)
        summary.rows += len(rows)
        if fmt == "submission":
            ids = [row[0] for row in rows]
            summary.duplicate_ids += sum(i in seen_ids for i in ids) + len(ids) - len(set(ids))
            seen_ids.update(ids)
    return summary
