"""The imbalanced-NEU benchmark's subset (issue 10, item 11): seeded counts, a balanced validation
split, symlinks only, and no image in both splits. Built from a small synthetic folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import neu_imbalance  # noqa: E402


def source(root: Path, per_class: dict[str, int]) -> Path:
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{name}_{i}.jpg").write_bytes(b"jpeg")
    return root


def listing(folder: Path) -> dict[str, set[str]]:
    return {c.name: {f.name for f in c.iterdir()} for c in sorted(folder.iterdir())}


def test_subset_is_seeded_imbalanced_and_validated_on_a_balanced_split(tmp_path):
    data = source(tmp_path / "data", {"a": 12, "b": 11, "c": 12})
    assigned, per_val = neu_imbalance.make_subset(data, (8, 4, 1), 0, tmp_path / "s0")
    assert sorted(assigned.values()) == [1, 4, 8] and per_val == 11 - 8
    train, val = listing(tmp_path / "s0" / "train"), listing(tmp_path / "s0" / "val")
    assert {c: len(f) for c, f in train.items()} == assigned
    assert {len(f) for f in val.values()} == {per_val}
    assert all(not (train[c] & val[c]) for c in train)
    links = list((tmp_path / "s0").rglob("*.jpg"))
    assert links and all(p.is_symlink() and p.resolve().parent.parent == data.resolve() for p in links)
    again, _ = neu_imbalance.make_subset(data, (8, 4, 1), 0, tmp_path / "again")
    assert again == assigned and listing(tmp_path / "again" / "train") == train
    other = [neu_imbalance.make_subset(data, (8, 4, 1), s, tmp_path / f"s{s}") for s in (1, 2, 3)]
    assert any(listing(tmp_path / f"s{s}" / "train") != train for s in (1, 2, 3)), other


def test_too_few_images_for_the_largest_count_is_an_error_naming_the_folder(tmp_path):
    data = source(tmp_path / "data", {"a": 5, "b": 9})
    with pytest.raises(SystemExit, match=f"{data}: the smallest class has too few images for 5"):
        neu_imbalance.make_subset(data, (5, 1), 0, tmp_path / "s")
