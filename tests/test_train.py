"""End-to-end training runs on the tiny model: run directory contents, resume, config errors."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cfg import CFG
from clipcls.commands.train import main
from clipcls.inference.checkpoint import load_checkpoint_file
from tests.conftest import cfg_argv


def run(cfg: dict, *extra: str) -> int:
    return main(cfg_argv(cfg) + list(extra), CFG)


def test_one_epoch_writes_the_run_directory(base_cfg):
    assert run(base_cfg) == 0
    run_dir = Path(base_cfg["output_dir"]) / "test"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["lr"] == base_cfg["lr"] and saved["model_name"] == "tiny"
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["class_names"] == ["green", "red", "곰팡이"]
    assert metrics["num_images"] == 5  # ceil(20% of 24), stratified
    assert 0.0 <= metrics["macro_f1"] <= 1.0 and set(metrics["per_class"]) == {"green", "red", "곰팡이"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 5
    with Image.open(run_dir / "confusion_matrix.png") as png:
        assert png.format == "PNG" and png.width > 300
    assert (run_dir / "logs" / "metrics.csv").is_file()
    ckpt = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["clipcls"]["class_to_idx"] == {"green": 0, "red": 1, "곰팡이": 2}
    assert ckpt["clipcls"]["descriptions"]["green"] == ["a green square", "green noise"]


def epochs_done(ckpt: dict) -> int:
    # last.ckpt is written in on_train_epoch_end (after validation and the best checkpoint), as
    # Lightning's own epoch-end checkpoints are: the epoch counts as processed, and Lightning
    # marks it completed only after the hook returns
    return ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]


def test_resume_continues_from_last_checkpoint(base_cfg):
    assert run(base_cfg) == 0
    last = Path(base_cfg["output_dir"]) / "test" / "checkpoints" / "last.ckpt"
    first = load_checkpoint_file(last)
    assert first["global_step"] == 3  # 19 images / batch 8
    assert first["lr_schedulers"][0]["last_epoch"] == 3
    assert run({**base_cfg, "epochs": 2}, "--resume", "last") == 0
    second = load_checkpoint_file(last)
    # 3 more steps on top of the first 3, and the LR schedule continued rather than restarted
    assert epochs_done(second) == 2 and second["global_step"] == 6
    assert second["lr_schedulers"][0]["last_epoch"] == 6


def test_existing_run_is_not_overwritten(base_cfg, capsys):
    assert run(base_cfg) == 0
    assert run(base_cfg) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def error_line(err: str) -> str:
    """The `error:` line, not the usage text (which lists every key)."""
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def test_unknown_key_and_bad_value_name_the_key(base_cfg, tmp_path, capsys):
    assert main(["--learning_rate", "1"], CFG) == 2
    assert error_line(capsys.readouterr().err) == "error: unrecognized arguments: --learning_rate 1"
    assert main(["--sampler", "sometimes"], CFG) == 2
    assert error_line(capsys.readouterr().err) == 'error: Parser key "sampler":'
    bad = tmp_path / "run.yaml"
    bad.write_text("lr: 0.01\nbogus_key: 3\n")
    assert main(["--config", str(bad)], CFG) == 2
    assert error_line(capsys.readouterr().err) == "error: Option 'bogus_key' is not accepted"
    assert run({**base_cfg, "test_size": 1.5}) == 2
    assert error_line(capsys.readouterr().err) == "error: invalid value for test_size: 1.5"


def test_config_file_and_flags_override_cfg(tmp_path, capsys):
    conf = tmp_path / "run.yaml"
    conf.write_text("lr: 0.003\nbatch_size: 4\n")
    assert main(["--config", str(conf), "--batch_size", "2", "--print_config"], CFG) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 0.003 and printed["batch_size"] == 2 and printed["epochs"] == CFG.epochs


def test_missing_descriptions_name_the_classes(base_cfg, capsys):
    Path(base_cfg["class_description_yaml_file"]).write_text('"red": a red square\n"purple": a purple one\n')
    assert run(base_cfg) == 2
    err = capsys.readouterr().err
    assert "green" in err and "곰팡이" in err and "purple" in err


def test_metrics_json_scores_the_best_checkpoint_not_the_last_epoch(base_cfg, monkeypatch):
    """Three epochs whose last one is made worse (its head negated before validation): metrics.json
    must be the best epoch's checkpoint scored again, not the final weights."""
    import csv

    import pytorch_lightning as pl
    import torch

    import clipcls.training.trainer

    class SpoilLastEpoch(pl.Callback):
        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == trainer.max_epochs - 1 and not trainer.sanity_checking:
                with torch.no_grad():
                    for param in pl_module.model.head.parameters():
                        param.neg_()

    build = clipcls.training.trainer.build_callbacks
    monkeypatch.setattr(clipcls.training.trainer, "build_callbacks", lambda c, d: [*build(c, d), SpoilLastEpoch()])
    assert run({**base_cfg, "epochs": 3}) == 0
    run_dir = Path(base_cfg["output_dir"]) / "test"
    with open(run_dir / "logs" / "metrics.csv", encoding="utf-8") as stream:
        curve = [float(r["val/macro_f1"]) for r in csv.DictReader(stream) if r.get("val/macro_f1")]
    assert len(curve) == 3 and curve[-1] < max(curve[:-1])
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    best_epoch = max(range(2), key=lambda e: curve[e])
    assert Path(metrics["checkpoint"]).name == f"best-epoch{best_epoch:03d}.ckpt"
    assert metrics["macro_f1"] == pytest.approx(curve[best_epoch], abs=1e-6)
