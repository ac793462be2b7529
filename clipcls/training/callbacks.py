"""Lightning callbacks and plug-ins of a run: last.ckpt kept current, mid-epoch resume, CSV logs
that survive a resume, and atomic, weights-only checkpoint files."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from clipcls.inference.checkpoint import load_checkpoint_file, save_checkpoint_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves and weights-only loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # always weights-only, whatever the caller asks for
        return load_checkpoint_file(path, map_location or "cpu")


SAVE_WEIGHTS_ONLY = False  # a save flag (loads stay weights-only): resuming needs optimizer and loop state


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
        # the whole training state, said explicitly: left unset, Lightning logs its default at every save
        trainer.save_checkpoint(self.path, weights_only=SAVE_WEIGHTS_ONLY)
        self._saved_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
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


class BaseModelFiles(pl.Callback):
    """Put the base model's config, tokenizer and image processor files (uint8 tensors by file
    name, see `clipcls.model.loading.read_base_files`) into every checkpoint, so a checkpoint
    copied on its own still rebuilds its model without the base checkpoint or the network."""

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = files

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        from clipcls.model.loading import BASE_MODEL_KEY

        checkpoint[BASE_MODEL_KEY] = self.files
