"""Behaviour the speed work relies on: cached text embeddings, compact path storage, and numpy
gathering that returns exactly what the plain Python version would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cfg_argv, make_module

from cfg import CFG
from clipcls.commands.train import main
from clipcls.data.index import PathTable, index_folder, stratified_split


def test_path_table_take_matches_python_selection() -> None:
    paths = [f"/data/클래스_{i % 3}/{i:05d}.jpg" for i in range(50)] + ["", "/odd/\udcff.jpg", "x"]
    table = PathTable(paths)
    picks = np.array([52, 0, 51, 49, 3, 3, 50], dtype=np.int64)
    taken = table.take(picks)
    assert [taken[i] for i in range(len(taken))] == [paths[i] for i in picks]
    assert len(table.take(np.array([], dtype=np.int64))) == 0


def test_index_and_split_keep_paths_and_labels_in_numpy(dataset) -> None:
    root, _ = dataset
    index = index_folder(root)
    train, val = stratified_split(index, 0.25, seed=0)
    for part in (index, train, val):
        assert isinstance(part.paths._data, np.ndarray) and part.paths._data.dtype == np.uint8
        assert isinstance(part.paths._offsets, np.ndarray)
        assert isinstance(part.labels, np.ndarray) and part.labels.dtype == np.int64
    assert sorted(
        [train.paths[i] for i in range(len(train.paths))] + [val.paths[i] for i in range(len(val.paths))]
    ) == [index.paths[i] for i in range(len(index.paths))]


def _count_text_forwards_in_training_steps(monkeypatch, cfg: dict) -> tuple[int, int]:
    """Run `python train.py` in-process; count training steps and, with a forward hook on the
    CLIP text encoder, the text-encoder forwards that happen inside them."""
    from clipcls.training.module import ClipClassifierModule

    counts = {"steps": 0, "text": 0, "in_step": False}
    step = ClipClassifierModule.training_step

    def hook_text_encoder(self) -> None:
        self.model.clip.text_model.register_forward_hook(
            lambda *_: counts.update(text=counts["text"] + counts["in_step"])
        )

    def counting_step(self, batch, batch_idx):
        counts["steps"] += 1
        counts["in_step"] = True
        try:
            return step(self, batch, batch_idx)
        finally:
            counts["in_step"] = False

    monkeypatch.setattr(ClipClassifierModule, "on_fit_start", hook_text_encoder, raising=False)
    monkeypatch.setattr(ClipClassifierModule, "training_step", counting_step)
    assert main(cfg_argv(cfg), CFG) == 0
    return counts["steps"], counts["text"]


def test_frozen_text_tower_is_not_run_in_training_steps(monkeypatch, base_cfg) -> None:
    import torch

    steps, text = _count_text_forwards_in_training_steps(monkeypatch, base_cfg)
    assert steps == 3  # 24 images, validation 20% -> 19 training images in batches of 8
    assert text == 0
    ckpt = torch.load(Path(base_cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["fused"] is True  # full precision: fused AdamW


def test_trainable_text_tower_is_run_once_per_training_step(monkeypatch, base_cfg) -> None:
    """The counter's positive control: with the text tower training, every step encodes."""
    steps, text = _count_text_forwards_in_training_steps(monkeypatch, {**base_cfg, "freeze_text": False})
    assert steps == 3
    assert text == steps


def test_help_paths_do_not_import_torch() -> None:
    """`python train.py --help`, `clipcls --help` and every `clipcls COMMAND --help` answer
    without importing torch, Lightning or transformers."""
    code = (
        "import sys, contextlib, io\n"
        "from cfg import CFG\n"
        "import clipcls.commands, clipcls.commands.train\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert clipcls.commands.main(['--help']) == 0\n"
        "    assert clipcls.commands.train.main(['--help'], CFG) == 0\n"
        "    for command in ('train', 'evaluate', 'zeroshot', 'predict', 'export', 'demo-data'):\n"
        "        assert clipcls.commands.main([command, '--help']) == 0, command\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_non_finite_gradient_drops_every_gradient_before_the_step(base_cfg) -> None:
    """The fast all-gradients norm check leaves finite gradients alone and, when any gradient is
    not finite, drops them all: the optimizer step is skipped whole (issue 10 item 10)."""
    import torch

    module = make_module(base_cfg, ["a", "b"], {"a": ["an a"], "b": ["a b"]})
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.ones_like(p)
    module.on_before_optimizer_step(None)  # all finite: untouched
    assert all(bool((p.grad == 1).all()) for p in params)
    params[0].grad.view(-1)[0] = float("nan")
    params[-1].grad.view(-1)[-1] = float("inf")
    module.on_before_optimizer_step(None)
    assert all(p.grad is None for p in params)


def test_cpu_training_splits_cores_between_workers_and_threads(monkeypatch) -> None:
    import torch

    from clipcls.data import loaders as datamodule

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        for cpus, processes, workers, threads in [(2, 1, 0, 2), (8, 1, 2, 6), (16, 2, 2, 6), (1, 1, 0, 1)]:
            monkeypatch.setattr(datamodule, "usable_cpus", lambda cpus=cpus: cpus)
            assert datamodule.default_workers(None, cpu_compute=True, processes=processes) == workers
            assert datamodule.balance_cpu_threads(workers, processes) == threads == torch.get_num_threads()
        assert datamodule.default_workers(None) == 1  # feeding a GPU: one per CPU (here 1) up to 8
        assert datamodule.default_workers(3, cpu_compute=True) == 3  # an explicit count always wins
        assert datamodule.balance_cpu_threads(3) == 1  # more workers than cores: still one thread
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert datamodule.balance_cpu_threads(0) == 2  # the user's OMP_NUM_THREADS setting is kept
    finally:
        torch.set_num_threads(before)


def test_training_on_cpu_applies_the_split(monkeypatch, base_cfg) -> None:
    """`python train.py` on CPU with num_workers unset: workers and threads follow the CPU split."""
    import torch

    from clipcls.data import loaders
    from clipcls.training import datamodule

    seen = {}
    setup = datamodule.ClipDataModule.setup

    def recording_setup(self, stage: str) -> None:
        setup(self, stage)
        seen.update(workers=self.workers, threads=torch.get_num_threads())

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(loaders, "usable_cpus", lambda: 4)
    monkeypatch.setattr(datamodule.ClipDataModule, "setup", recording_setup)
    before = torch.get_num_threads()
    try:
        assert main(cfg_argv({**base_cfg, "num_workers": None}), CFG) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == {"workers": 1, "threads": 3}


def test_bf16_mixed_training_with_gradient_clipping_runs_on_cpu(base_cfg) -> None:
    """Mixed precision keeps the unfused AdamW: Lightning refuses to clip a fused one's gradients."""
    import torch

    cfg = {**base_cfg, "precision": "bf16-mixed", "grad_clip": 1.0}
    assert main(cfg_argv(cfg), CFG) == 0
    ckpt = torch.load(Path(cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert ckpt["optimizer_states"][0]["param_groups"][0]["fused"] is None


def test_split_too_small_for_the_classes_is_a_dataset_error(dataset) -> None:
    """(Found while sizing the benchmarks: sklearn's own ValueError used to escape.)"""
    from clipcls.data.index import DatasetError

    index = index_folder(dataset[0])  # 3 classes x 8 images
    for test_size in (0.05, 0.95):
        with pytest.raises(DatasetError, match=r"test_size .* the 3 classes"):
            stratified_split(index, test_size, seed=0)
    train, val = stratified_split(index, 3 / 24, seed=0)
    assert (len(train.labels), len(val.labels)) == (21, 3)
