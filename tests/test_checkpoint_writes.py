"""Issue 4, items 3 and 13: a save that fails half-way (I/O error, disk full) leaves the previous
checkpoints whole and loadable, nothing partial at a final path, no temporary files behind; an
unusable output directory is a clear error before training starts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import clipcls.io
from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from clipcls.io import atomic_write_bytes
from tests.conftest import cfg_argv


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


class HalfWriter:
    """A file handle that writes half of what it is given, then fails with `error`."""

    def __init__(self, handle, error: BaseException) -> None:
        self.handle, self.error = handle, error

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise self.error

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self) -> HalfWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


class FailingOs:
    """`os` as clipcls.io sees it, except that files it opens fail half-way (only those whose
    path contains `only`, when given: e.g. checkpoints, while the run's config.yaml is written)."""

    def __init__(self, error: BaseException, only: str | None = None) -> None:
        self.error, self.only = error, only

    def fdopen(self, fd: int, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        if self.only is not None and self.only not in os.readlink(f"/proc/self/fd/{fd}"):
            return handle
        return HalfWriter(handle, self.error)

    def __getattr__(self, name: str):
        return getattr(os, name)


def files(directory: Path) -> dict[str, bytes]:
    """Every file in `directory` (hidden temporary files included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_write_bytes(b"old" * 1000, target)
    monkeypatch.setattr(clipcls.io, "os", FailingOs(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_bytes(b"new" * 1000, target)
    assert files(tmp_path) == {"last.ckpt": b"old" * 1000}


def test_a_failed_rewrite_of_the_run_config_keeps_the_previous_one(tmp_path, monkeypatch):
    from clipcls.config import ConfigError, load_config, save_config

    target = tmp_path / "config.yaml"
    save_config({"lr": 0.001, "run_name": "old"}, target)
    monkeypatch.setattr(clipcls.io, "os", FailingOs(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ConfigError, match=f"cannot write {target}: No space left on device"):
        save_config({"lr": 0.002, "run_name": "new"}, target)
    monkeypatch.undo()
    assert load_config(target) == {"lr": 0.001, "run_name": "old"} and list(files(tmp_path)) == ["config.yaml"]


Files = dict[str, bytes]


def interrupted_training(cfg: dict, monkeypatch, error: OSError, capsys) -> tuple[Files, Files, str]:
    """Train 1 epoch, then resume for a 2nd whose first checkpoint save fails half-way with
    `error`: the checkpoint directory before and after, and what the failing run printed."""
    assert run(cfg) == 0
    ckpt_dir = Path(cfg["output_dir"]) / cfg["run_name"] / "checkpoints"
    before = files(ckpt_dir)
    capsys.readouterr()
    monkeypatch.setattr(clipcls.io, "os", FailingOs(error, only=".ckpt."))
    assert run({**cfg, "epochs": 2}, "--resume", "last") == 2
    monkeypatch.undo()
    return before, files(ckpt_dir), capsys.readouterr().err


# --- item 3 ------------------------------------------------------------------------------------
def test_save_failing_half_way_leaves_previous_checkpoints_intact(base_cfg, monkeypatch, capsys):
    before, after, err = interrupted_training(base_cfg, monkeypatch, OSError(errno.EIO, "Input/output error"), capsys)
    assert after == before  # byte for byte: nothing partial at a final path, no temporary left
    assert {"last.ckpt"} < set(after) and all(name.endswith(".ckpt") for name in after)
    ckpt_dir = Path(base_cfg["output_dir"]) / "test" / "checkpoints"
    assert load_checkpoint_file(ckpt_dir / "last.ckpt")["global_step"] == 3
    assert "error: cannot write checkpoint" in err and "Input/output error" in err
    assert "the previous file there (if any) is unchanged" in err
    # and that state resumes: the 2nd epoch runs once the disk works again
    assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 0
    assert load_checkpoint_file(ckpt_dir / "last.ckpt")["global_step"] == 6


def test_temp_file_left_by_a_killed_save_is_removed_on_resume(base_cfg):
    assert run(base_cfg) == 0
    ckpt_dir = Path(base_cfg["output_dir"]) / "test" / "checkpoints"
    litter = ckpt_dir / ".last.ckpt.k1ll3d.tmp"  # the name atomic_write_bytes gives its temp file
    litter.write_bytes(b"half a checkpoint")
    assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 0
    assert not litter.exists()
    assert not list(ckpt_dir.glob(".*"))


# --- item 13 -----------------------------------------------------------------------------------
def test_disk_full_during_training_is_a_clear_error_and_no_corrupt_checkpoint(base_cfg, monkeypatch, capsys):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    before, after, err = interrupted_training(base_cfg, monkeypatch, full, capsys)
    assert after == before
    ckpt_dir = Path(base_cfg["output_dir"]) / "test" / "checkpoints"
    for name in after:
        load_checkpoint_file(ckpt_dir / name)  # every checkpoint still loads
    assert "No space left on device" in err
    failed = err.split("error: cannot write checkpoint ", 1)[1].split(":", 1)[0]
    assert Path(failed).parent == ckpt_dir and failed.endswith(".ckpt")  # it names the file


def test_unwritable_output_dir_is_an_error_before_training(base_cfg, tmp_path, capsys):
    # tests run as root, which chmod cannot stop: a path below a regular file fails for anyone
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the output directory should be")
    cfg = {**base_cfg, "output_dir": str(blocker / "runs")}
    assert run(cfg) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write to run directory {blocker / 'runs' / 'test'}: Not a directory" in err
    assert blocker.read_text() == "a file where the output directory should be"


def test_read_only_output_dir_is_an_error_before_training(base_cfg, monkeypatch, capsys):
    import clipcls.training.run

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(clipcls.training.run.tempfile, "TemporaryFile", read_only)
    assert run(base_cfg) == 2
    run_dir = Path(base_cfg["output_dir"]) / "test"
    assert f"error: cannot write to run directory {run_dir}: Read-only file system" in capsys.readouterr().err
    assert not run_dir.exists()


def test_too_little_free_space_is_an_error_before_training(base_cfg, monkeypatch, capsys):
    import shutil

    import clipcls.training.run

    usage = shutil.disk_usage(Path(base_cfg["output_dir"]).parent)
    monkeypatch.setattr(clipcls.training.run.shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    assert run(base_cfg) == 2
    run_dir = Path(base_cfg["output_dir"]) / "test"
    err = capsys.readouterr().err
    assert f"error: not enough disk space in {run_dir}: 1 MiB free, checkpoints need about" in err
    assert not (run_dir / "checkpoints").exists()
