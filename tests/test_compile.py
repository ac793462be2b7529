"""Issue 14: `compile: true` (torch.compile of the image tower) trains the same model as eager."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest
import torch

from clipcls.data.dataset import Batch
from tests.conftest import make_module

CLASSES = ["red", "green", "곰팡이"]
DESCRIPTIONS = {"red": ["a red square"], "green": ["a green square", "green noise"], "곰팡이": ["파란색 사각형"]}


def compiler_missing() -> str | None:
    """Why torch.compile's CPU backend cannot build here, or None (it needs a C++ compiler and
    Python's headers to build its kernels)."""
    if shutil.which("g++") is None and shutil.which("clang++") is None:
        return "torch.compile needs a C++ compiler (g++ or clang++) on the CPU"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "torch.compile needs Python's C headers (Python.h; the python3-dev package)"
    return None


def loss_and_grads(module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.train()
    module.zero_grad()
    torch.manual_seed(0)  # the step's description draw
    loss = module.shared_step(batch)["loss"]
    loss.backward()
    vision = module.model.clip.vision_model
    return loss.detach(), {n: p.grad.clone() for n, p in vision.named_parameters() if p.grad is not None}


def test_compiled_image_tower_gives_the_eager_loss_and_gradients(base_cfg):
    # the feature's only test: CI (.ci/run installs g++ and python3-dev) must run it; elsewhere a
    # machine without a compiler may skip it
    missing = compiler_missing()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}: .ci/run installs them with apt-get")
    if missing:
        pytest.skip(missing)
    torch.manual_seed(1)
    batch = Batch(torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6), [])
    eager = make_module(base_cfg, CLASSES, DESCRIPTIONS)
    compiled = make_module({**base_cfg, "compile": True}, CLASSES, DESCRIPTIONS)
    assert compiled.model.clip.vision_model._compiled_call_impl is not None
    assert eager.state_dict().keys() == compiled.state_dict().keys()  # checkpoints are unchanged
    eager_loss, eager_grads = loss_and_grads(eager, batch)
    compiled_loss, compiled_grads = loss_and_grads(compiled, batch)
    assert torch.isfinite(eager_loss) and eager_loss > 0
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys() and len(eager_grads) > 10
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
