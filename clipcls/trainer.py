"""The Lightning Trainer for a run: callbacks, loggers, checkpointing, and the run's final report."""
from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from clipcls.checkpoint import AtomicCheckpointIO, load_checkpoint_file
from clipcls.metrics import classification_metrics, plot_confusion, write_json


class LastCheckpoint(Checkpoint):
    """Keep `last.ckpt` current: after every epoch, every `every_n_steps` steps, and on SIGTERM.

    Lightning's `ModelCheckpoint(save_last=True)` refreshes last.ckpt only when it also saves a
    new best, so after epochs without improvement `--resume last` would silently go back to the
    best epoch. On SIGTERM Lightning stops after the current batch and raises; saving here makes
    that stop resumable. Being a `Checkpoint`, it runs after the callbacks listed before it
    (the best-model ModelCheckpoint, early stopping), so their updated state is in the file.
    """

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path = path
        self.every_n_steps = every_n_steps
        self._saved_step = -1  # gradient accumulation repeats a step over several batches

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step and step % self.every_n_steps == 0 and step != self._saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self._save(trainer)


class SkipTrainedBatches(pl.Callback):
    """After a mid-epoch resume Lightning restarts the epoch's DataLoader from its first batch
    while counting on from the batches already done: those would be trained twice and the rest
    of the epoch never. The epoch-seeded sampler skips them instead, so a run killed mid-epoch
    sees the same batches as an uninterrupted one."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if trainer.fit_loop.restarted_mid_epoch and hasattr(sampler, "skip"):
            done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            sampler.skip = {trainer.current_epoch: done * loader.batch_size}


class AppendingCSVLogger(CSVLogger):
    """CSVLogger that keeps the rows already in metrics.csv: Lightning's deletes the file when
    a run resumes, which would drop the training curves of everything before the resume."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            path = Path(self.log_dir) / "metrics.csv"
            previous = path.read_bytes() if path.is_file() else b""
            writer = super().experiment  # creating the writer deletes the old file
            if previous:
                path.write_bytes(previous)
                with path.open(newline="", encoding="utf-8") as handle:
                    writer.metrics_keys = next(csv.reader(handle), [])
        return super().experiment


def monitor_mode(monitor: str) -> str:
    """Losses are minimised, everything else (F1, accuracy) maximised."""
    return "min" if "loss" in monitor else "max"


def build_callbacks(cfg: dict[str, Any], ckpt_dir: Path) -> list[pl.Callback]:
    mode = monitor_mode(cfg["monitor"])
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor=cfg["monitor"], mode=mode,
                        save_top_k=1, auto_insert_metric_name=False),
        # with checkpoint_every_n_steps a killed run loses at most that many steps
        LastCheckpoint(ckpt_dir / "last.ckpt", cfg["checkpoint_every_n_steps"]),
        SkipTrainedBatches(),
        LearningRateMonitor(logging_interval="step"),
        TQDMProgressBar(refresh_rate=10),
    ]
    if cfg["early_stopping_patience"] is not None:
        callbacks.append(EarlyStopping(cfg["monitor"], patience=cfg["early_stopping_patience"], mode=mode))
    return callbacks


def build_trainer(cfg: dict[str, Any], run_dir: Path) -> pl.Trainer:
    """A Trainer for CPU, one GPU or DDP across GPUs and nodes, as the config says."""
    loggers = [AppendingCSVLogger(run_dir, name="logs", version=""), TensorBoardLogger(run_dir, name="logs", version="")]
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=cfg["epochs"],
        max_time=timedelta(minutes=cfg["max_minutes"]) if cfg["max_minutes"] else None,
        accelerator=cfg["accelerator"], devices=cfg["devices"], strategy=cfg["strategy"],
        num_nodes=cfg["num_nodes"], precision=cfg["precision"],
        gradient_clip_val=cfg["grad_clip"], accumulate_grad_batches=cfg["accumulate_grad_batches"],
        callbacks=build_callbacks(cfg, run_dir / "checkpoints"), logger=loggers,
        log_every_n_steps=cfg["log_every_n_steps"], plugins=[AtomicCheckpointIO()],
        deterministic=False, enable_model_summary=False,
    )


def best_checkpoint(trainer: pl.Trainer) -> Path | None:
    callback = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    return Path(callback.best_model_path) if callback and callback.best_model_path else None


def finalize_run(trainer: pl.Trainer, module, datamodule, run_dir: Path) -> dict[str, Any]:
    """Score the best checkpoint on the whole validation split; write metrics.json and the
    confusion-matrix PNG. Runs on global rank 0 only."""
    from clipcls.inference import run_inference

    best = best_checkpoint(trainer)
    if best is not None:
        module.load_state_dict(load_checkpoint_file(best)["state_dict"])
    outputs = run_inference(module.model, datamodule.val_dataloader(), module.device)
    metrics = classification_metrics(outputs["targets"], outputs["head_logits"].argmax(1), module.class_names)
    metrics = {"checkpoint": str(best) if best else None, "epochs_trained": trainer.current_epoch,
               "global_step": trainer.global_step, "class_names": module.class_names, **metrics}
    write_json(metrics, run_dir / "metrics.json")
    plot_confusion(metrics["confusion_matrix"], module.class_names, run_dir / "confusion_matrix.png",
                   title=f"Validation confusion (macro F1 {metrics['macro_f1']:.3f})")
    return metrics
