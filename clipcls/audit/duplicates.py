"""Exact and near duplicates: within a class, across classes, and across train/val (leakage).

Exact copies share a SHA-256 of their bytes. Near copies (re-encoded, resized) are found in two
steps: a cheap first pass keeps the pairs whose 64-bit perceptual hashes differ in at most
`PHASH_MAX_BITS` bits (XOR and popcount over tiles of the pair matrix, so memory stays flat),
and the second keeps those whose image embeddings have a cosine of at least `COSINE_MIN`.
Both thresholds were chosen on a measurement (benchmarks/audit_bench.py, benchmarks/RESULTS.md
"Issue 21"): on NEU, copies re-encoded at another JPEG quality or resized fall well inside them,
and the only untouched pairs inside were genuine copies and overlapping crops of one photo.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

PHASH_MAX_BITS = 10  # of 64; copies re-encoded or resized measured at <= 4, overlapping crops at 6-8
COSINE_MIN = 0.95  # embedding cosine a near copy must also reach (copies measured >= 0.996 with mini)
BLOCK = 2048  # the pairwise XOR is computed in BLOCK x BLOCK tiles (32 MiB): memory flat in N
MAX_CANDIDATES = 200_000  # first-pass pairs kept; beyond that the hash is not telling images apart


def exact_pairs(sha256: np.ndarray, readable_or_hashed: np.ndarray) -> Iterator[tuple[int, int]]:
    """(i, j), i < j, of files with identical bytes; each group gives its pairs with its first file."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i in np.flatnonzero(readable_or_hashed):
        groups[sha256[i].tobytes()].append(int(i))
    for members in groups.values():
        for j in members[1:]:
            yield members[0], j


def phash_candidates(phash: np.ndarray, valid: np.ndarray, max_bits: int = PHASH_MAX_BITS) -> np.ndarray:
    """(K, 3) int64 rows (i, j, bits), i < j, of valid images whose hashes differ in <= max_bits
    bits, found block by block. At most MAX_CANDIDATES pairs (the closest first)."""
    idx = np.flatnonzero(valid)
    hashes = phash[idx]
    found: list[np.ndarray] = []
    total = 0
    for lo in range(0, len(idx), BLOCK):
        block = hashes[lo : lo + BLOCK]
        for col in range(lo, len(idx), BLOCK):  # only columns >= lo: each pair once
            bits = np.bitwise_count(block[:, None] ^ hashes[None, col : col + BLOCK])
            rows, cols = np.nonzero(bits <= max_bits)
            keep = cols + col > rows + lo
            rows, cols = rows[keep], cols[keep]
            found.append(np.stack([idx[rows + lo], idx[cols + col], bits[rows, cols]], axis=1).astype(np.int64))
            total += len(rows)
        if total > 4 * MAX_CANDIDATES:  # degenerate hashes (blank images): stop growing
            break
    pairs = np.concatenate(found) if found else np.zeros((0, 3), np.int64)
    return pairs[np.argsort(pairs[:, 2], kind="stable")[:MAX_CANDIDATES]]


def near_pairs(
    phash: np.ndarray,
    valid: np.ndarray,
    embeddings: np.ndarray,
    row_of: np.ndarray,
    max_bits: int | None = None,
    cosine_min: float | None = None,
) -> list[tuple[int, int, int, float]]:
    """(i, j, hash bits, cosine) of near copies: close perceptual hashes confirmed by the image
    embeddings (`embeddings[row_of[i]]` is image i's L2-normalised embedding; -1: none).
    The thresholds default to PHASH_MAX_BITS and COSINE_MIN."""
    max_bits = PHASH_MAX_BITS if max_bits is None else max_bits
    cosine_min = COSINE_MIN if cosine_min is None else cosine_min
    valid = valid & (row_of >= 0)
    candidates = phash_candidates(phash, valid, max_bits)
    if len(candidates) == 0:
        return []
    a, b = embeddings[row_of[candidates[:, 0]]], embeddings[row_of[candidates[:, 1]]]
    cosine = np.einsum("ij,ij->i", a.astype(np.float32), b.astype(np.float32))
    keep = cosine >= cosine_min
    return [(int(i), int(j), int(d), float(c)) for (i, j, d), c in zip(candidates[keep], cosine[keep])]


def classify_pair(i: int, j: int, labels: np.ndarray, splits: np.ndarray) -> str:
    """within class / across classes (one of them is mislabelled) / across splits (leakage)."""
    if splits[i] != splits[j]:
        return "across splits"
    return "within class" if labels[i] == labels[j] else "across classes"


def duplicate_rows(
    pairs: list[tuple[int, int, str, int | None, float | None]],
    paths,
    labels: np.ndarray,
    splits: np.ndarray,
    class_names: list[str],
    split_names: list[str],
) -> list[dict[str, Any]]:
    """CSV/report rows: leakage first, then across classes, then within class; exact before near,
    closest first within each kind."""
    order = {"across splits": 0, "across classes": 1, "within class": 2}
    rows = []
    for i, j, kind, bits, cosine in pairs:
        rows.append(
            {
                "where": classify_pair(i, j, labels, splits),
                "kind": kind,
                "path_a": paths[i],
                "split_a": split_names[splits[i]],
                "class_a": class_names[labels[i]],
                "path_b": paths[j],
                "split_b": split_names[splits[j]],
                "class_b": class_names[labels[j]],
                "phash_bits": "" if bits is None else bits,
                "cosine": "" if cosine is None else round(cosine, 4),
            }
        )
    rows.sort(key=lambda r: (order[r["where"]], r["kind"] != "exact", -(r["cosine"] or 1.0)))
    return rows
