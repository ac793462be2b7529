"""Issue 13, item 1: killed mid-epoch and resumed, a run ends with exactly the weights, optimizer
state and step of the run never interrupted, for every sampler, with and without augmentation,
on one process and on two (DDP, gloo on CPU)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import cfg_argv
from tests.faults import run_child

ROOT = Path(__file__).resolve().parents[1]


class SimulatedKill(Exception):
    """Stands for SIGKILL: raised as a step starts, after last.ckpt was written at an earlier one."""


class KillAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise SimulatedKill(f"killed at step {self.step}")


def last_ckpt(cfg: dict, name: str) -> dict:
    return load_checkpoint_file(Path(cfg["output_dir"]) / name / "checkpoints" / "last.ckpt")


def max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


@pytest.mark.parametrize("augment", ["none", "trivialaugment"])
@pytest.mark.parametrize("sampler", ["random", "balanced", "per_class"])
def test_kill_mid_epoch_and_resume_equals_the_straight_run(base_cfg, monkeypatch, sampler, augment):
    import clipcls.training.trainer

    # 19 training images: 5 steps an epoch in batches of 4 (per_class: 6 groups of 3); last.ckpt
    # every 2 steps; killed as step 3 starts, so the resume repeats step 2's successor mid-epoch
    cfg = {**base_cfg, "sampler": sampler, "augment": augment, "batch_size": 4, "epochs": 2}
    cfg["checkpoint_every_n_steps"] = 2
    assert run({**cfg, "run_name": "straight"}) == 0
    build = clipcls.training.trainer.build_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(clipcls.training.trainer, "build_callbacks", lambda c, d: [*build(c, d), KillAtStep(3)])
        with pytest.raises(SimulatedKill):
            run({**cfg, "run_name": "killed"})
    killed = last_ckpt(cfg, "killed")
    assert killed["global_step"] == 2 and killed["epoch"] == 0
    assert run({**cfg, "run_name": "killed"}, "--resume", "last") == 0
    straight, resumed = last_ckpt(cfg, "straight"), last_ckpt(cfg, "killed")
    assert resumed["global_step"] == straight["global_step"] == (12 if sampler == "per_class" else 10)
    assert max_difference(resumed["state_dict"], straight["state_dict"]) == 0
    # every parameter's AdamW state (moments and step count), none left out of the comparison
    resumed_state, straight_state = resumed["optimizer_states"][0]["state"], straight["optimizer_states"][0]["state"]
    assert resumed_state.keys() == straight_state.keys() and len(straight_state) > 10
    for key, state in straight_state.items():
        assert max_difference(resumed_state[key], state) == 0, key


# Both runs of each sampler in one torchrun launch of 2 processes: they start once (the slow part)
# and each Trainer after the first joins the process group already there.
DDP_SCRIPT = """
import json, sys
import pytorch_lightning as pl
import clipcls.training.trainer as trainer_module
from cfg import CFG
from clipcls.commands.train import main
from tests.conftest import cfg_argv
from tests.test_resume_exact import KillAtStep, SimulatedKill

cfg = json.loads(sys.argv[1])
build = trainer_module.build_callbacks
for sampler in ("random", "balanced", "per_class"):
    run = {**cfg, "sampler": sampler}
    assert main(cfg_argv({**run, "run_name": sampler + "-straight"}), CFG) == 0
    trainer_module.build_callbacks = lambda c, d: [*build(c, d), KillAtStep(2)]
    try:
        main(cfg_argv({**run, "run_name": sampler + "-killed"}), CFG)
        raise SystemExit("not killed")
    except SimulatedKill:
        pass
    trainer_module.build_callbacks = build
    assert main(cfg_argv({**run, "run_name": sampler + "-killed"}) + ["--resume", "last"], CFG) == 0
"""


def test_two_process_ddp_kill_mid_epoch_and_resume_equals_the_straight_run(base_cfg, tmp_path):
    # 19 training images over 2 processes: 10 each, 3 steps an epoch in batches of 4 (per_class:
    # 6 groups of 3 -> 3 per process); last.ckpt every step; killed as step 2 starts
    cfg = {**base_cfg, "devices": 2, "strategy": "ddp", "epochs": 2, "batch_size": 4, "augment": "trivialaugment"}
    cfg["checkpoint_every_n_steps"] = 1
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    script = tmp_path / "resume_runs.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = run_child([*torchrun, str(script), json.dumps(cfg)], timeout=240, env=env)  # < pytest's 300 s
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for sampler in ("random", "balanced", "per_class"):
        straight, resumed = last_ckpt(cfg, f"{sampler}-straight"), last_ckpt(cfg, f"{sampler}-killed")
        assert straight["global_step"] == resumed["global_step"] == 6, sampler
        assert max_difference(resumed["state_dict"], straight["state_dict"]) == 0, sampler
        assert torch.equal(
            resumed["optimizer_states"][0]["state"][0]["exp_avg"],
            straight["optimizer_states"][0]["state"][0]["exp_avg"],
        )
