"""Issue 13, items 5, 7 and 9: isolated offline tests, quiet honest output, and what a new user
trying the package broke, each answered by one line that names the value at fault."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cfg import CFG
from clipcls.commands.train import main
from tests.conftest import TEST_CACHE, cfg_argv


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# --- item 5 ------------------------------------------------------------------------------------
def test_tests_run_offline_with_a_model_cache_of_their_own():
    import huggingface_hub.constants

    from clipcls.model.tiny import cache_dir, tiny_clip_path

    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE
    assert cache_dir() == TEST_CACHE and Path.home() not in TEST_CACHE.parents
    assert Path(tiny_clip_path()).parent == TEST_CACHE  # the tiny model is built from cold, here
    assert (Path(tiny_clip_path()) / "config.json").is_file()


# --- item 7 ------------------------------------------------------------------------------------
def test_output_to_a_log_is_plain_lines_without_the_weights_only_notice(base_cfg, capfd, caplog):
    caplog.set_level(logging.INFO)
    assert run({**base_cfg, "epochs": 2}) == 0
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "weights_only" not in logged  # Lightning's notice at every save is gone
    assert "\r" not in out + err  # no progress-bar redraws in a file
    # 19 training images in batches of 8: 3 batches an epoch
    assert "epoch 1/2 batch 3/3 done" in err and "epoch 2/2 batch 3/3 done" in err
    assert "validation after epoch 2" in err


def test_a_terminal_gets_the_progress_bar():
    import io

    from pytorch_lightning.callbacks import TQDMProgressBar

    from clipcls.training.progress import PlainProgress, progress_callback

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_callback(Terminal()), TQDMProgressBar)
    assert isinstance(progress_callback(io.StringIO()), PlainProgress)


# --- item 9: a model or accelerator that is not there --------------------------------------------
@pytest.mark.parametrize(
    ("model_name", "message"),
    [
        ("opnai/clip-vit-bse", "is neither a local directory nor in the Hugging Face cache"),
        ("./models/my-clip", "no such model directory"),
        ("not a name!", "is neither a local directory nor a valid Hub model name"),
    ],
)
def test_an_unloadable_model_name_is_one_line_before_the_data_is_indexed(base_cfg, capsys, model_name, message):
    # a data folder that does not exist: had the data been indexed first, that would be the error
    cfg = {**base_cfg, "model_name": model_name, "train_dataset_dir": "/nonexistent/train"}
    assert run(cfg) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: model_name {model_name!r}") and message in lines[0]


def test_a_directory_that_is_not_a_model_is_named(base_cfg, tmp_path, capsys):
    (tmp_path / "empty-model").mkdir()
    assert run({**base_cfg, "model_name": str(tmp_path / "empty-model")}) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [
        f"error: model_name {str(tmp_path / 'empty-model')!r} is a directory without config.json: "
        + "not a saved model"
    ]


def test_accelerator_gpu_without_one_is_one_line(base_cfg, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert run({**base_cfg, "accelerator": "gpu", "train_dataset_dir": "/nonexistent/train"}) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: accelerator 'gpu': no CUDA GPU is available")


# --- item 9: --resume given something that is not a checkpoint ------------------------------------
@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"epochs: 3\nlr: 0.001\n", "begins with b'epochs: '"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{}", "begins with b'\\x10\\x00"),  # a safetensors header
    ],
)
def test_resume_from_a_file_that_is_not_a_checkpoint_says_so(base_cfg, tmp_path, capsys, content, what):
    fake = tmp_path / "model.ckpt"
    fake.write_bytes(content)
    assert run(base_cfg, "--resume", str(fake)) == 2
    err = capsys.readouterr().err
    assert f"error: {fake} is not a checkpoint: a checkpoint is a zip archive written by torch.save" in err
    assert what in err and "_use_new_zipfile_serialization" not in err


# --- item 9: export --overwrite deletes nothing but an earlier export -----------------------------
def test_export_overwrite_never_deletes_the_source_or_the_current_directory(tmp_path, monkeypatch, capsys):
    from clipcls.commands import export

    run_dir = tmp_path / "runs" / "test"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 stands for a checkpoint")
    (run_dir / "clipcls.json").write_text("{}")  # even if it looks like an export
    cases = [
        (run_dir, f"refusing to replace {run_dir}: it holds the model being exported"),
        (tmp_path / "runs", f"refusing to replace {tmp_path / 'runs'}: it holds the model being exported"),
    ]
    for out, message in cases:
        assert export.main([str(run_dir), "--out", str(out), "--overwrite"]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert lines == [f"error: {message} ({run_dir})"]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert export.main([str(run_dir), "--out", ".", "--overwrite"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: refusing to replace .: it is (or contains) the current directory"
    ]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # nothing was deleted
    assert (tmp_path / "elsewhere" / "notes.txt").is_file()
