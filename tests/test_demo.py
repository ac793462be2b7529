"""Tests for clipcls.data.demo: counts, sizes, determinism, idempotence and the descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from clipcls.data.demo import (
    DEMO_CLASSES,
    MARKER_NAME,
    make_demo_dataset,
    scaled_counts,
)
from clipcls.data.demo_draw import SIDES

SCALE = 0.02  # 2-5 images per class: the whole set draws in well under a second
DESCRIPTIONS = Path(__file__).resolve().parents[1] / "info" / "demo_class_descriptions.yaml"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small demo set shared by the read-only tests."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0, scale=SCALE)


def _jpegs(root: Path) -> dict[str, bytes]:
    """Every image under root, keyed by its path relative to root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*.jpg"))}


def test_demo_classes_are_imbalanced_and_sized_for_a_quick_run() -> None:
    required = {"clean", "mould", "tear", "seam_gap", "stain", "bubble", "scratch"}
    assert required <= set(DEMO_CLASSES)
    assert all(name.isascii() for name in DEMO_CLASSES)
    assert 700 <= sum(DEMO_CLASSES.values()) <= 900
    assert 4 <= max(DEMO_CLASSES.values()) / min(DEMO_CLASSES.values()) <= 6


def test_scaled_counts_multiply_and_keep_two_per_class() -> None:
    assert scaled_counts(1.0) == DEMO_CLASSES
    assert scaled_counts(0.5)["clean"] == round(DEMO_CLASSES["clean"] / 2)
    assert set(scaled_counts(0.001).values()) == {2}
    with pytest.raises(ValueError, match="scale"):
        scaled_counts(0.0)


def test_folders_hold_the_scaled_counts(demo_root: Path) -> None:
    folders = {p.name for p in demo_root.iterdir() if p.is_dir()}
    assert folders == set(DEMO_CLASSES)
    for name, count in scaled_counts(SCALE).items():
        names = sorted(p.name for p in (demo_root / name).iterdir())
        assert names == sorted(f"{name}_{i}.jpg" for i in range(count))


def test_images_are_rgb_jpegs_within_the_size_range(demo_root: Path) -> None:
    sizes = set()
    for path in demo_root.glob("*/*.jpg"):
        with Image.open(path) as img:
            assert (img.format, img.mode) == ("JPEG", "RGB")
            assert min(SIDES) <= min(img.size) and max(img.size) <= max(SIDES)
            sizes.add(img.size)
    assert len(sizes) > 1  # sizes vary, so a pipeline cannot assume one


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(demo_root: Path, tmp_path: Path) -> None:
    again = make_demo_dataset(tmp_path / "again", seed=0, scale=SCALE)
    assert _jpegs(again) == _jpegs(demo_root)
    other = _jpegs(make_demo_dataset(tmp_path / "other", seed=1, scale=SCALE))
    assert other.keys() == _jpegs(demo_root).keys()
    assert all(other[k] != v for k, v in _jpegs(demo_root).items())


def test_second_call_does_not_rewrite(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path, seed=0, scale=SCALE)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert make_demo_dataset(tmp_path, seed=0, scale=SCALE) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert json.loads((root / MARKER_NAME).read_text())["seed"] == 0


def test_interrupted_generation_is_redone(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path, seed=0, scale=SCALE)
    expected = _jpegs(root)
    # An interrupted run: marker never written, one image missing, one half-written temp file.
    (root / MARKER_NAME).unlink()
    (root / "tear" / "tear_1.jpg").unlink()
    (root / "tear" / "tear_0.jpg.tmp").write_bytes(b"partial")
    make_demo_dataset(tmp_path, seed=0, scale=SCALE)
    assert _jpegs(root) == expected
    assert not list(root.rglob("*.tmp"))
    assert (root / MARKER_NAME).exists()


def test_smaller_scale_removes_leftover_images(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, seed=0, scale=0.05)
    root = make_demo_dataset(tmp_path, seed=0, scale=SCALE)
    for name, count in scaled_counts(SCALE).items():
        assert len(list((root / name).glob("*.jpg"))) == count


def test_description_keys_match_the_demo_classes() -> None:
    descriptions = yaml.safe_load(DESCRIPTIONS.read_text(encoding="utf-8"))
    assert set(descriptions) == set(DEMO_CLASSES)
    for value in descriptions.values():
        texts = [value] if isinstance(value, str) else value
        assert texts and all(isinstance(t, str) and t.strip() for t in texts)
