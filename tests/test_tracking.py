"""Experiment tracking: `loggers: [csv, mlflow]` writes an MLflow run that the mlflow API reads
back, next to the CSV log that `evaluate` reads curves from."""

from __future__ import annotations

from pathlib import Path

import mlflow  # a required test dependency (clipcls[test]): a broken install fails, never skips
import pytest

from cfg import CFG
from clipcls.training.loggers import build_loggers, mlflow_uri
from tests.conftest import cfg_argv


def test_default_loggers_are_csv_and_tensorboard(base_cfg: dict, tmp_path: Path):
    assert CFG().loggers == ["csv", "tensorboard"]
    loggers = build_loggers(base_cfg, tmp_path / "run")
    assert [type(lg).__name__ for lg in loggers] == ["AppendingCSVLogger", "TensorBoardLogger"]


def test_csv_and_mlflow_run_is_read_back_through_the_mlflow_api(base_cfg: dict, monkeypatch):
    from clipcls.commands.train import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = {**base_cfg, "loggers": ["csv", "mlflow"], "epochs": 2}
    assert main(cfg_argv(cfg), CFG) == 0
    run_dir = Path(cfg["output_dir"]) / "test"
    assert (run_dir / "logs" / "metrics.csv").is_file()
    assert not list((run_dir / "logs").glob("events.*"))  # no tensorboard unless asked for
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri(cfg))
    experiment = client.get_experiment_by_name("clipcls")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "test" and run.info.status == "FINISHED"
    assert "val/macro_f1" in run.data.metrics and "train/loss" in run.data.metrics
    assert "val/f1/_acf0_d321_c774" in run.data.metrics  # val/f1/곰팡이, spelled so MLflow takes it
    history = client.get_metric_history(run.info.run_id, "val/macro_f1")
    assert len(history) == 2  # one value per epoch
    assert 0.0 <= history[-1].value <= 1.0


def test_missing_tracker_package_is_a_clear_error(base_cfg: dict, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)
    with pytest.raises(ImportError, match="loggers: wandb needs the 'wandb' package"):
        build_loggers({**base_cfg, "loggers": ["csv", "wandb"]}, tmp_path / "run")
