"""Issue 14: smoke tests that need CUDA (skipped without it): a bf16-mixed training run of the tiny
model, with either data path, and nvjpeg's pixels against the CPU path's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import cfg_argv

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_bf16_training_steps_on_cuda(base_cfg, decode):
    cfg = {**base_cfg, "accelerator": "gpu", "devices": 1, "precision": "bf16-mixed", "decode": decode}
    assert main(cfg_argv(cfg), CFG) == 0
    ckpt = load_checkpoint_file(Path(cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3  # 19 training images in batches of 8
    weights = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert all(bool(torch.isfinite(w).all()) for w in weights)
    assert all(w.dtype == torch.float32 for w in weights)  # mixed precision keeps fp32 weights


def test_nvjpeg_pixels_match_the_cpu_path(tmp_path):
    from clipcls.data.dataset import ImageDataset, collate_samples
    from clipcls.data.device_decode import DeviceDecoder
    from clipcls.data.transforms import build_transform
    from tests.test_device_decode import MEAN, SIZE, STD, device_batch, image_files

    paths = image_files(tmp_path / "images")
    encoded, _ = device_batch(paths)
    batch = DeviceDecoder(SIZE, MEAN, STD)(encoded, "cuda")
    assert batch.pixels.device.type == "cuda" and batch.failures == []
    cpu = ImageDataset([str(p) for p in paths], np.arange(len(paths)), build_transform(SIZE, MEAN, STD, "none"))
    expected = collate_samples([cpu[i] for i in range(len(paths))]).pixels
    levels = (batch.pixels.cpu() - expected).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255
    assert levels.max() <= 8 and levels.mean() <= 1.0, (float(levels.max()), float(levels.mean()))
    assert not math.isnan(float(levels.mean()))
