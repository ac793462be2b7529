"""Experiment trackers for a run, chosen by the `loggers` config key, through Lightning's loggers.

CSV is the record `clipcls evaluate` reads the training curves from, so it stays in the default;
TensorBoard, MLflow and Weights & Biases are added by name. MLflow writes to a local file store
(`<output_dir>/mlruns`) unless MLFLOW_TRACKING_URI names a server; W&B runs offline (files under
the run directory, `wandb sync` later) unless WANDB_MODE=online or an API key is set, since an
inspection PC often has no network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import Logger, TensorBoardLogger

from clipcls.optional import require
from clipcls.training.callbacks import AppendingCSVLogger

LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
DEFAULT_LOGGERS = ["csv", "tensorboard"]
EXPERIMENT = "clipcls"  # the MLflow experiment and W&B project every run is filed under


def mlflow_uri(cfg: dict[str, Any]) -> str:
    """MLFLOW_TRACKING_URI, else a file store beside the run directories. MLflow 3 keeps the file
    store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE; a database store would need
    SQLAlchemy and Alembic on every inspection PC, so the plain files are allowed here."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (Path(cfg["output_dir"]).resolve() / "mlruns").as_uri()


def mlflow_name(key: str) -> str:
    """A metric name MLflow accepts: letters, digits and `_-./ ` kept, anything else (a Korean
    class name in `val/f1/<class>`) spelled as `_<hex code point>`, so names stay distinct
    (Lightning would drop such characters, and two classes' names could collide)."""
    return "".join(c if (c.isascii() and (c.isalnum() or c in "_-./ ")) else f"_{ord(c):x}" for c in key)


def mlflow_logger() -> type:
    """Lightning's MLFlowLogger with metric names made acceptable to MLflow (`mlflow_name`)."""
    from pytorch_lightning.loggers import MLFlowLogger

    class ClipclsMLFlowLogger(MLFlowLogger):
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            super().log_metrics({mlflow_name(k): v for k, v in metrics.items()}, step)

    return ClipclsMLFlowLogger


def build_logger(name: str, cfg: dict[str, Any], run_dir: Path) -> Logger:
    """One Lightning logger by name; the optional packages are imported only when asked for."""
    if name == "csv":
        return AppendingCSVLogger(run_dir, name="logs", version="")
    if name == "tensorboard":
        return TensorBoardLogger(run_dir, name="logs", version="")
    if name == "mlflow":
        require("mlflow", "loggers: mlflow")
        return mlflow_logger()(experiment_name=EXPERIMENT, run_name=run_dir.name, tracking_uri=mlflow_uri(cfg))
    if name == "wandb":
        require("wandb", "loggers: wandb")
        from pytorch_lightning.loggers import WandbLogger

        online = os.environ.get("WANDB_MODE") == "online" or bool(os.environ.get("WANDB_API_KEY"))
        return WandbLogger(project=EXPERIMENT, name=run_dir.name, save_dir=str(run_dir), offline=not online)
    raise ValueError(f"unknown logger {name!r}: expected some of {', '.join(LOGGERS)}")


def build_loggers(cfg: dict[str, Any], run_dir: Path) -> list[Logger]:
    """The run's loggers, in the order named (duplicates dropped)."""
    names = cfg.get("loggers")
    names = DEFAULT_LOGGERS if names is None else names
    return [build_logger(name, cfg, run_dir) for name in dict.fromkeys(names)]
