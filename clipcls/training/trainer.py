"""The Lightning Trainer for a run: callbacks, loggers and checkpointing, as the config says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from clipcls.training.callbacks import AtomicCheckpointIO, LastCheckpoint, SkipTrainedBatches
from clipcls.training.loggers import build_loggers
from clipcls.training.progress import progress_callback


def monitor_mode(monitor: str) -> str:
    """Losses are minimised, everything else (F1, accuracy) maximised."""
    return "min" if "loss" in monitor else "max"


def build_callbacks(cfg: dict[str, Any], ckpt_dir: Path) -> list[pl.Callback]:
    mode = monitor_mode(cfg["monitor"])
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best-epoch{epoch:03d}",
            monitor=cfg["monitor"],
            mode=mode,
            save_top_k=1,
            auto_insert_metric_name=False,
        ),
        # with checkpoint_every_n_steps a killed run loses at most that many steps
        LastCheckpoint(ckpt_dir / "last.ckpt", cfg["checkpoint_every_n_steps"]),
        SkipTrainedBatches(),
        LearningRateMonitor(logging_interval="step"),
        progress_callback(),  # a bar on a terminal, plain lines in a log file
    ]
    if cfg["early_stopping_patience"] is not None:
        callbacks.append(EarlyStopping(cfg["monitor"], patience=cfg["early_stopping_patience"], mode=mode))
    return callbacks


def build_trainer(cfg: dict[str, Any], run_dir: Path) -> pl.Trainer:
    """A Trainer for CPU, one GPU or DDP across GPUs and nodes, as the config says."""
    loggers = build_loggers(cfg, run_dir)  # the `loggers` key: csv, tensorboard, mlflow, wandb
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=cfg["epochs"],
        max_time=timedelta(minutes=cfg["max_minutes"]) if cfg["max_minutes"] else None,
        accelerator=cfg["accelerator"],
        devices=cfg["devices"],
        strategy=cfg["strategy"],
        num_nodes=cfg["num_nodes"],
        precision=cfg["precision"],
        gradient_clip_val=cfg["grad_clip"],
        accumulate_grad_batches=cfg["accumulate_grad_batches"],
        callbacks=build_callbacks(cfg, run_dir / "checkpoints"),
        logger=loggers,
        log_every_n_steps=cfg["log_every_n_steps"],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the datamodule's samplers split the data (exact mid-epoch resume)
        deterministic=False,
        enable_model_summary=False,
    )


def best_checkpoint(trainer: pl.Trainer) -> Path | None:
    callback = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    return Path(callback.best_model_path) if callback and callback.best_model_path else None
