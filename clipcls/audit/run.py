"""Run every audit check on a training folder (and a validation folder) and write the results.

The order is the cheap-to-dear one: index the folders (clipcls.data.index), read every file once
(`files`), embed every readable image once (`embeddings`, cached), then the checks that read those
numbers. A problem in the data is a finding in the report, never an exception: an empty class, a
class of unreadable files, a class without description. Only what stops the audit itself (no
such folder, a YAML that does not parse, a model that cannot be loaded) is an error (exit 2).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.audit import descriptions as desc
from clipcls.audit import duplicates as dup
from clipcls.audit import files as fil
from clipcls.audit import labels as lab

log = logging.getLogger("clipcls.audit")
SEVERITIES = ("severe", "warning", "info")
SPLITS = ["train", "val"]


@dataclass
class AuditInputs:
    """What to audit and how; the defaults are `clipcls audit`'s."""

    data: str
    out: Path
    val: str | None = None
    descriptions: str | None = None
    model: str = "mini"  # the command's default is training's model_name
    test_size: float = 0.2  # the validation split that will be made when there is no `val`
    batch_size: int = 32
    workers: int | None = None
    device: str = "auto"
    progress: bool | None = None  # None: a progress bar when stderr is a terminal


@dataclass
class Audit:
    """Everything the report needs: findings, per-check tables and a few facts."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    similarity: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    label_quality: np.ndarray | None = None  # cleanlab's score per image (nan: not probed), for benchmarks

    def add(self, check: str, severity: str, message: str, subject: str = "") -> None:
        self.findings.append({"check": check, "severity": severity, "message": message, "subject": subject})

    def count(self, severity: str) -> int:
        return sum(f["severity"] == severity for f in self.findings)


@dataclass
class Images:
    """The audited images of both splits in one table."""

    paths: Any  # PathTable
    labels: np.ndarray
    splits: np.ndarray  # 0 train, 1 val
    class_names: list[str]


def index_images(data: str, val: str | None, audit: Audit) -> Images:
    """Index the training folder and the validation folder under one class list (training's
    classes, then any only the validation folder has, which is a severe finding)."""
    from clipcls.data.index import PathTable, index_folder, list_classes

    class_names = list_classes(data)
    val_classes = list_classes(val) if val else []
    extra = [c for c in val_classes if c not in class_names]
    if extra:
        audit.add("val classes", "severe", f"{val} has class folders that {data} lacks: {extra}", ", ".join(extra))
    class_names += extra
    indexes = [index_folder(data, class_names)] + ([index_folder(val, class_names)] if val else [])
    paths = [ix.paths[i] for ix in indexes for i in range(len(ix.paths))]
    labels = np.concatenate([ix.labels for ix in indexes]).astype(np.int64)
    splits = np.concatenate([np.full(len(ix.labels), s, np.int64) for s, ix in enumerate(indexes)])
    return Images(PathTable(paths), labels, splits, class_names)


def read_class_descriptions(inputs: AuditInputs, class_names: list[str], audit: Audit) -> dict[str, list[str]] | None:
    """The description file's entries for the classes, or None without a file. Missing classes
    are a severe finding (training would refuse); they are described by their name meanwhile."""
    if not inputs.descriptions:
        return None
    from clipcls.data.descriptions import read_descriptions

    found = read_descriptions(inputs.descriptions)
    missing = desc.missing_descriptions(class_names, found)
    if missing:
        message = f"{inputs.descriptions} has no description for the classes {missing}; training refuses to start"
        audit.add("missing description", "severe", message, ", ".join(missing))
    unused = [name for name in found if name not in class_names]
    if unused:
        audit.add("unused description", "info", f"described but no folder: {unused}", ", ".join(unused))
    return {name: found.get(name, [name.replace("_", " ")]) for name in class_names}


def run_audit(inputs: AuditInputs) -> Audit:
    """Every check; the findings and tables of the report (nothing written yet)."""
    from clipcls.audit.embeddings import embed_images, load_audit_model
    from clipcls.inference.scoring import pick_device

    audit = Audit()
    images = index_images(inputs.data, inputs.val, audit)
    names, n = images.class_names, len(images.labels)
    audit.class_names = names
    described = read_class_descriptions(inputs, names, audit)
    with _progress(inputs, n, "reading files") as tick:
        table = fil.scan_files(images.paths, tick)
    _file_and_class_checks(inputs, images, table, audit)
    model = load_audit_model(inputs.model, names, described or {c: [c.replace("_", " ")] for c in names})
    with _progress(inputs, int(table.readable.sum()), "embedding") as tick:
        emb, row_of, reused = embed_images(
            model, images.paths, table.readable, inputs.out, inputs.batch_size, inputs.workers,
            pick_device(inputs.device), tick,
        )  # fmt: skip
    audit.facts.update(
        {
            "model": model.name,
            "input size": f"{model.image_size[0]}x{model.image_size[1]}",
            "images": n,
            "embedded": int((row_of >= 0).sum()),
            "embeddings": f"{'reused from' if reused else 'written to'} {inputs.out / 'embeddings.npy'}",
        }
    )
    _duplicate_checks(images, table, emb, row_of, audit)
    _label_checks(images, emb, row_of, audit)
    if described is not None:
        _description_checks(model, described, images, emb, row_of, audit)
    return audit


def _file_and_class_checks(inputs: AuditInputs, images: Images, table, audit: Audit) -> None:
    rows = list(fil.file_findings(images.paths, table))
    audit.tables["files"] = rows
    for problem in ("unreadable", "truncated", "tiny", "extreme aspect", "nearly constant"):
        hits = [r for r in rows if r["problem"] == problem]
        if hits:
            audit.add(problem, "warning", f"{len(hits)} {problem} image file(s), e.g. {hits[0]['path']}", problem)
    audit.tables["classes"] = []
    for s, split in enumerate(SPLITS[: 1 + int(inputs.val is not None)]):
        mine = images.splits == s
        class_rows = fil.class_rows(images.class_names, images.labels[mine], table.readable[mine])
        audit.tables["classes"] += [{"split": split, **r} for r in class_rows]
        for f in fil.class_findings(class_rows, split, split == "train" and inputs.val is None, inputs.test_size):
            audit.findings.append(f)


def _duplicate_checks(images: Images, table, emb: np.ndarray, row_of: np.ndarray, audit: Audit) -> None:
    hashed = table.sha256.any(axis=1)
    exact = list(dup.exact_pairs(table.sha256, hashed))
    # a group of byte copies is listed once, as exact pairs with its first file; not again as near
    near = [
        p
        for p in dup.near_pairs(table.phash, table.readable, emb, row_of)
        if not (hashed[p[0]] and np.array_equal(table.sha256[p[0]], table.sha256[p[1]]))
    ]
    pairs = [(i, j, "exact", None, None) for i, j in exact] + [(i, j, "near", d, c) for i, j, d, c in near]
    rows = dup.duplicate_rows(pairs, images.paths, images.labels, images.splits, images.class_names, SPLITS)
    audit.tables["duplicates"] = rows
    audit.facts["near-duplicate rule"] = (
        f"perceptual hash within {dup.PHASH_MAX_BITS} of 64 bits and embedding cosine >= {dup.COSINE_MIN}"
    )
    split_made = images.splits.max(initial=0) == 0
    for where, kind in [(w, k) for w in ("across splits", "across classes", "within class") for k in ("exact", "near")]:
        hits = [r for r in rows if r["where"] == where and r["kind"] == kind]
        if not hits:
            continue
        severe = where == "across splits" or (where == "across classes" and kind == "exact")
        note = {
            "across splits": "the same picture in training and validation inflates validation scores",
            "across classes": "the same picture under two labels: at least one is wrong",
            "within class": "copies weigh double"
            + ("; a validation split of this folder will put some copies on both sides" if split_made else ""),
        }[where]
        message = f"{len(hits)} {kind} duplicate pair(s) {where}: {note}"
        audit.add(f"duplicates {where}", "severe" if severe else "warning", message, kind)


def _label_checks(images: Images, emb: np.ndarray, row_of: np.ndarray, audit: Audit) -> None:
    embedded = np.flatnonzero(row_of >= 0)
    result = lab.label_issues(np.asarray(emb[row_of[embedded]]), images.labels[embedded], len(images.class_names))
    result["ranked"] = embedded[result["ranked"]]  # back to image positions
    quality, suggested = np.full(len(images.labels), np.nan), np.full(len(images.labels), -1, np.int64)
    quality[embedded], suggested[embedded] = result["quality"], result["suggested"]
    result["quality"], result["suggested"] = quality, suggested
    rows = lab.label_rows(result, images.paths, images.labels, images.splits, images.class_names, SPLITS)
    audit.tables["label_issues"] = rows
    audit.tables["label_quality"] = lab.quality_rows(
        result, images.paths, images.labels, images.splits, images.class_names, SPLITS
    )
    audit.label_quality = quality  # for benchmarks: every image's score, nan where not probed
    skipped = [images.class_names[c] for c in range(len(images.class_names)) if c not in result["probed_classes"]]
    if "probe_accuracy" in result:
        audit.facts["label probe"] = (
            f"{result['folds']}-fold logistic regression on the embeddings (out-of-fold accuracy "
            f"{result['probe_accuracy']:.3f}); ranked by cleanlab"
        )
    if skipped:
        audit.add("label check skipped", "info", f"classes with < {lab.MIN_PER_CLASS} images not probed: {skipped}")
    if rows:
        share = len(rows) / max(1, len(embedded))
        message = (
            f"{len(rows)} image(s) ({share:.1%}) whose folder label the embeddings contradict; see label_issues.csv"
        )
        audit.add("label issues", "warning", message)


def _description_checks(model, described, images: Images, emb, row_of, audit: Audit) -> None:
    import torch

    names = images.class_names
    with torch.inference_mode():
        class_emb = model.classifier.embed_descriptions(described).float().cpu().numpy()
    audit.similarity = np.clip(class_emb.astype(np.float64) @ class_emb.T.astype(np.float64), -1.0, 1.0)
    pairs = desc.most_similar(audit.similarity, names, top=None)
    audit.tables["description_pairs"] = pairs[: desc.TOP_PAIRS]
    for pair in [p for p in pairs if p["cosine"] >= desc.SIMILAR_COSINE]:
        message = f"descriptions of {pair['a']!r} and {pair['b']!r} embed at cosine {pair['cosine']:.3f}"
        audit.add("similar descriptions", "warning", message, f"{pair['a']}, {pair['b']}")
    long = desc.token_overflows(model.classifier, described)
    audit.tables["long_descriptions"] = long
    for row in long:
        message = f"a description of {row['class']!r} has {row['tokens']} tokens; the model keeps {row['limit']}"
        audit.add("description too long", "warning", message, row["class"])
    embedded = np.flatnonzero(row_of >= 0)
    recall = desc.zeroshot_recall(np.asarray(emb[row_of[embedded]]), images.labels[embedded], class_emb, names)
    audit.tables["zeroshot_recall"] = recall
    chance = 1 / max(1, len(names))
    for row in recall:
        if row["images"] and not math.isnan(row["recall"]) and row["recall"] < chance:
            message = (
                f"the description of {row['class']!r} classifies {row['recall']:.0%} of its images correctly "
                f"(chance {chance:.0%}), most often as {row['most_mistaken_for']!r}"
            )
            audit.add("weak description", "info", message, row["class"])


class _progress:
    """Progress as a context giving `tick(n)`: tqdm's bar on a terminal; in a log (stderr not a
    terminal) a plain line every PLAIN_EVERY_S seconds, as training does; nothing when
    `inputs.progress` is False."""

    PLAIN_EVERY_S = 30.0

    def __init__(self, inputs: AuditInputs, total: int, what: str) -> None:
        self.total, self.what, self.done, self.bar = total, what, 0, None
        self.last = time.monotonic()
        tty = sys.stderr.isatty()
        self.plain = inputs.progress is None and not tty
        if inputs.progress or (inputs.progress is None and tty):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit="img", leave=False)

    def tick(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
            return
        self.done += n
        if self.plain and time.monotonic() - self.last >= self.PLAIN_EVERY_S:
            self.last = time.monotonic()
            print(f"audit: {self.what} {self.done}/{self.total} images", file=sys.stderr, flush=True)

    def __enter__(self):
        return self.tick

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
