"""Issue 4, items 1, 2, 4, 5: a killed or terminated run resumes where it was, exactly, and a
broken checkpoint is an error naming it, never a silent fresh start."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from clipcls.inference.trained_model import load_trained
from tests.conftest import cfg_argv
from tests.faults import lr_rows, start_slow_training, steps_started, wait_for


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


def run_dir_of(cfg: dict) -> Path:
    return Path(cfg["output_dir"]) / cfg["run_name"]


def saved_step(path: Path) -> int:
    """global_step of the checkpoint at `path`, or -1 while there is none."""
    return load_checkpoint_file(path)["global_step"] if path.exists() else -1


def batches_done(ckpt: dict) -> int:
    """Batches of the current epoch the checkpoint has trained on."""
    return ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]


def epochs_processed(ckpt: dict) -> int:
    return ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]


# --- item 1 ------------------------------------------------------------------------------------
def test_kill_9_mid_epoch_then_resume_last_continues(base_cfg, tmp_path):
    # 19 training images in batches of 4: 5 steps an epoch, 10 in all; last.ckpt every 2 steps
    cfg = {**base_cfg, "batch_size": 4, "epochs": 2, "checkpoint_every_n_steps": 2}
    last = run_dir_of(cfg) / "checkpoints" / "last.ckpt"
    progress, log = tmp_path / "progress.txt", tmp_path / "train.log"
    proc = start_slow_training(cfg, progress, log, hold_at=3)
    # kill inside the epoch, while step 3 runs (last.ckpt was written after step 2)
    wait_for(lambda: Path(f"{progress}.held").exists(), proc, log)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed = load_checkpoint_file(last)  # the atomic writer left a whole file
    assert killed["global_step"] == 2 and killed["epoch"] == 0 and 0 < batches_done(killed) < 5
    killed_lr = killed["lr_schedulers"][0]["_last_lr"][0]

    before = lr_rows(run_dir_of(cfg))  # what the killed process had flushed to metrics.csv
    assert run(cfg, "--resume", "last") == 0  # what `python train.py --resume last` runs

    # training went on from the killed step with the scheduler's learning rate, not from step 0
    resumed = lr_rows(run_dir_of(cfg))[len(before) :]
    steps = [step for step, _ in resumed]
    assert steps[0] == killed["global_step"] and steps == sorted(steps) and steps[-1] == 9
    assert resumed[0][1] == killed_lr
    # warm-up is 1 step of 10: a fresh start would log the peak LR at step 0
    assert killed_lr < cfg["lr"] and 0 not in steps
    final = load_checkpoint_file(last)
    assert final["global_step"] == 10 and epochs_processed(final) == 2 and final["epoch"] == 1
    assert final["lr_schedulers"][0]["last_epoch"] == 10
    model = load_trained(run_dir_of(cfg))
    assert model.class_names == ["green", "red", "곰팡이"]
    # more than continuity: the same batches and random draws as a run that was never killed,
    # so the same weights (the resumed epoch skips the batches the checkpoint had trained on)
    assert run({**cfg, "run_name": "straight"}) == 0
    straight = load_checkpoint_file(run_dir_of({**cfg, "run_name": "straight"}) / "checkpoints" / "last.ckpt")
    for name, weight in straight["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], weight, msg=name)


# --- item 2 ------------------------------------------------------------------------------------
class StopAfterFirstEpoch(pl.Callback):
    """Ends a 2-epoch run after its first epoch, as a kill at the epoch boundary would."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_one_epoch_plus_resume_equals_two_epochs_straight(base_cfg, monkeypatch):
    import clipcls.training.trainer

    cfg = {**base_cfg, "epochs": 2}
    assert run({**cfg, "run_name": "straight"}) == 0
    build = clipcls.training.trainer.build_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(clipcls.training.trainer, "build_callbacks", lambda c, d: [*build(c, d), StopAfterFirstEpoch()])
        assert run({**cfg, "run_name": "split"}) == 0
    half = load_checkpoint_file(run_dir_of({**cfg, "run_name": "split"}) / "checkpoints" / "last.ckpt")
    assert half["global_step"] == 3 and epochs_processed(half) == 1
    assert run({**cfg, "run_name": "split"}, "--resume", "last") == 0

    straight, split = (
        load_checkpoint_file(run_dir_of({**cfg, "run_name": name}) / "checkpoints" / "last.ckpt")
        for name in ("straight", "split")
    )
    assert split["global_step"] == straight["global_step"] == 6
    assert epochs_processed(split) == epochs_processed(straight) == 2
    assert split["state_dict"].keys() == straight["state_dict"].keys()
    for name, weight in straight["state_dict"].items():
        torch.testing.assert_close(split["state_dict"][name], weight, msg=name)
    # AdamW moments and step counts, and the scheduler (last LR, step count), match too
    for resumed, uninterrupted in zip(split["optimizer_states"], straight["optimizer_states"], strict=True):
        # each group's "kind" is a label (assert_close compares tensors and numbers only)
        assert [g.pop("kind", None) for g in resumed["param_groups"]] == [
            g.pop("kind", None) for g in uninterrupted["param_groups"]
        ]
        torch.testing.assert_close(resumed, uninterrupted)
    assert split["lr_schedulers"] == straight["lr_schedulers"]
    assert split["lr_schedulers"][0]["last_epoch"] == 6
    # the resumed run appended to metrics.csv (Lightning's CSVLogger would have deleted it):
    # one learning-rate curve, the same as the straight run's
    curves = [lr_rows(run_dir_of({**cfg, "run_name": name})) for name in ("straight", "split")]
    assert curves[1] == curves[0] and [step for step, _ in curves[0]] == [0, 1, 2, 3, 4, 5]


# --- item 4 ------------------------------------------------------------------------------------
def test_truncated_or_empty_last_checkpoint_is_an_error_naming_it(base_cfg, capsys):
    assert run(base_cfg) == 0
    ckpt_dir = run_dir_of(base_cfg) / "checkpoints"
    last, (best,) = ckpt_dir / "last.ckpt", ckpt_dir.glob("best-*.ckpt")
    whole = last.read_bytes()
    capsys.readouterr()
    for broken, reason in ((whole[: len(whole) // 2], "failed finding central directory"), (b"", "empty (0 bytes)")):
        last.write_bytes(broken)
        assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 2
        err = capsys.readouterr().err
        assert f"error: cannot load checkpoint {last}" in err or f"error: checkpoint is empty (0 bytes): {last}" in err
        assert reason in err and "not starting from scratch" in err
        # the error says which intact checkpoint to resume from instead
        assert f"continue from it with --resume {best}" in err
        assert last.read_bytes() == broken  # nothing was trained or overwritten
    # following the hint works
    assert run({**base_cfg, "epochs": 2}, "--resume", str(best)) == 0
    assert load_checkpoint_file(last)["global_step"] == 6


# --- item 5 (SIGTERM) and issue 13, item 2 (Ctrl-C) ----------------------------------------------
@pytest.mark.parametrize(
    ("sent", "status", "message"),
    [
        # as Slurm's scancel or `timeout` do: every process
        (signal.SIGTERM, 143, "terminated: checkpoint saved in {last}; continue with --resume last"),
        # what Ctrl-C does: the whole foreground process group
        (signal.SIGINT, 130, "interrupted: checkpoint saved in {last}; resume with: python train.py --resume last"),
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_a_signal_saves_a_resumable_checkpoint_and_exits_with_its_status(base_cfg, tmp_path, sent, status, message):
    # 5 steps an epoch, no step checkpoints; 2 loader workers, which get the signal too
    cfg = {**base_cfg, "batch_size": 4, "epochs": 2, "num_workers": 2}
    last = run_dir_of(cfg) / "checkpoints" / "last.ckpt"
    progress, log = tmp_path / "progress.txt", tmp_path / "train.log"
    # the signal arrives while step 2 is held: on the event, not after a time, however loaded
    # the machine (the step cannot end before the test releases it, after signalling)
    proc = start_slow_training(cfg, progress, log, hold_at=2)
    wait_for(lambda: Path(f"{progress}.held").exists(), proc, log)
    os.killpg(proc.pid, sent)
    Path(f"{progress}.release").touch()
    assert proc.wait(timeout=120) == status, log.read_text(errors="replace")[-3000:]
    output = log.read_text(errors="replace")
    assert message.format(last=last) in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    # Lightning finished the running step, then the checkpoint was written mid-epoch
    saved = load_checkpoint_file(last)
    assert steps_started(progress) == [0, 1, 2]  # no step began after the signal
    assert saved["global_step"] == 3 and saved["epoch"] == 0 and batches_done(saved) == 3
    assert run(cfg, "--resume", "last") == 0
    assert load_checkpoint_file(last)["global_step"] == 10


def test_second_ctrl_c_exits_at_once_and_leaves_the_checkpoint_whole(base_cfg, tmp_path):
    cfg = {**base_cfg, "batch_size": 4, "epochs": 2, "checkpoint_every_n_steps": 1}
    last = run_dir_of(cfg) / "checkpoints" / "last.ckpt"
    progress, log = tmp_path / "progress.txt", tmp_path / "train.log"
    proc = start_slow_training(cfg, progress, log, hold_at=3)  # step 3 does not end by itself
    wait_for(lambda: Path(f"{progress}.held").exists(), proc, log)
    os.killpg(proc.pid, signal.SIGINT)
    wait_for(lambda: "Ctrl-C again to quit at once" in log.read_text(errors="replace"), proc, log)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=10) == 130  # without waiting for the step to end
    assert load_checkpoint_file(last)["global_step"] == 3  # the last save, whole
    assert run(cfg, "--resume", "last") == 0
    assert load_checkpoint_file(last)["global_step"] == 10
