"""Shared fixtures: a synthetic class-folder data set and a fast, offline training config."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Offline and isolated, whatever the machine (issue 13, item 5): a test that would reach the Hub
# fails instead of downloading, and the built-in tiny model is built from cold into a cache of the
# test run's own, not read from (or written to) the user's ~/.cache/clipcls. Set before any test
# module imports huggingface_hub, which reads these once; child processes inherit them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# One cache for the whole run: pytest imports this file as `conftest` and test modules again as
# `tests.conftest`, and scripts of the tests' child processes import it too; each import would
# otherwise make (and leave behind) a directory of its own.
if "CLIPCLS_TEST_CACHE" not in os.environ:
    os.environ["CLIPCLS_TEST_CACHE"] = tempfile.mkdtemp(prefix="clipcls-test-cache-")
TEST_CACHE = Path(os.environ["CLIPCLS_TEST_CACHE"])
os.environ["CLIPCLS_CACHE"] = str(TEST_CACHE)

CLASSES = {"red": (210, 40, 40), "green": (40, 190, 60), "곰팡이": (40, 60, 210)}  # a Korean class name


DESCRIPTIONS = {"red": ["a red square"], "green": ["a green square", "green noise"], "곰팡이": ["파란색 사각형"]}


# Classes of wallpaper defects for model-level tests, one Korean name and one with two descriptions.
WALL_CLASSES = ["곰팡이", "stain", "clean"]
WALL_DESCRIPTIONS = {
    "곰팡이": ["black mould spots", "곰팡이 얼룩"],
    "stain": ["a brown stain"],
    "clean": ["plain wallpaper"],
}


def make_folder(root: Path, per_class: int = 8, size: int = 24, seed: int = 0) -> Path:
    """Solid-colour images with noise: trivially separable, so a 1-epoch run can learn them."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASSES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-25, 25, (size, size, 3))
            Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(root / name / f"{i}.jpg")
    return root


def make_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """(image folder, descriptions YAML) with three classes, one of them Korean."""
    root = make_folder(tmp_path / "train")
    yaml_file = tmp_path / "descriptions.yaml"
    yaml_file.write_text(
        '"red": a red square\n"green": [a green square, green noise]\n"곰팡이": 파란색 사각형\n', encoding="utf-8"
    )
    return root, yaml_file


def tiny_cfg(root: Path, yaml_file: Path, output_dir: Path) -> dict:
    """A resolved config for a seconds-long CPU run on the tiny model (run dir: output_dir/test)."""
    from cfg import CFG

    cfg = dataclasses.asdict(CFG())
    cfg.update(
        train_dataset_dir=str(root),
        class_description_yaml_file=str(yaml_file),
        model_name="tiny",
        img_transform_size_W=32,
        img_transform_size_H=32,
        batch_size=8,
        epochs=1,
        num_workers=0,
        output_dir=str(output_dir),
        run_name="test",
        lr=1e-3,
        augment="none",
        accelerator="cpu",
        devices=1,
        sampler="random",  # every image once an epoch: step counts the tests can state
        log_every_n_steps=1,
        checkpoint_every_n_steps=None,
    )
    cfg["optim_betas"] = list(cfg["optim_betas"])
    return cfg


def train_tiny_run(root: Path) -> Path:
    """Train the tiny CLIP for one epoch at 32 px on the colour folders (a few seconds on CPU);
    returns the run directory, root/runs/test."""
    from cfg import CFG
    from clipcls.commands.train import main

    cfg = tiny_cfg(*make_dataset(root), root / "runs")
    assert main(cfg_argv(cfg), CFG) == 0
    return root / "runs" / "test"


def tiny_hf_export(root: Path) -> Path:
    """An HF export of the tiny CLIP with a zero-shot head at 32 px, written without training
    (seconds, and independent of the training code): the PyTorch reference of these tests."""
    import torch

    from clipcls.export.huggingface import export_model
    from clipcls.inference.trained_model import TrainedModel
    from clipcls.model.classifier import ClipClassifier
    from clipcls.model.loading import load_clip

    torch.manual_seed(0)
    parts = load_clip("tiny")
    names = list(CLASSES)
    classifier = ClipClassifier(
        parts.model, parts.tokenizer, names, DESCRIPTIONS, image_mean=parts.image_mean, image_std=parts.image_std
    )
    model = TrainedModel(classifier.eval(), names, DESCRIPTIONS, (32, 32), parts.image_mean, parts.image_std)
    return export_model(model, root / "hf")


def write_images(root: Path) -> Path:
    """conftest's colour JPEGs, three per class."""
    return make_folder(root / "train", per_class=3)


@pytest.fixture
def parts():
    """The tiny random CLIP's parts (model, tokenizer, normalisation), freshly loaded."""
    from clipcls.model.loading import load_clip

    return load_clip("tiny")


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    return make_dataset(tmp_path)


@pytest.fixture
def base_cfg(dataset, tmp_path: Path) -> dict:
    return tiny_cfg(*dataset, tmp_path / "runs")


def cfg_argv(cfg: dict) -> list[str]:
    """The config as train.py flags."""
    argv = []
    for key, value in cfg.items():
        if value is None:
            argv += [f"--{key}", "null"]
        elif isinstance(value, list):
            argv += [f"--{key}", "[" + ", ".join(map(str, value)) + "]"]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def make_module(cfg: dict, class_names: list[str], descriptions: dict[str, list[str]]):
    """A LightningModule around the classifier the config builds, as a training run makes it."""
    from clipcls.training.module import build_module

    return build_module(cfg, class_names, descriptions)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `gpu` need CUDA: skipped, with the reason, on machines without it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config) -> None:
    """Remove the test run's model cache."""
    shutil.rmtree(TEST_CACHE, ignore_errors=True)
