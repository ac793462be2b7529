"""Progress output that suits where it goes: a live bar on a terminal, plain lines in a log.

tqdm redraws its bar with carriage returns; in a file or a CI log each redraw stays, and an
epoch becomes one enormous line of overwritten bars. When stderr is not a terminal a run prints
a plain line every so often instead, and one at the end of every epoch and validation.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar


class PlainProgress(ProgressBar):
    """One line per `every_seconds` of training (and per epoch and validation), on stderr."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        super().__init__()
        self.every_seconds = every_seconds
        self._enabled = True
        self._last = 0.0
        self._batches = 0  # of the current epoch

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def _metrics(self, pl_module: pl.LightningModule) -> str:
        metrics = self.get_metrics(self.trainer, pl_module)
        return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())

    def _where(self) -> str:
        epochs = self.trainer.max_epochs
        total = self.total_train_batches
        batches = f"/{total}" if isinstance(total, int) else ""
        return f"epoch {self.trainer.current_epoch + 1}/{epochs} batch {self._batches}{batches}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.monotonic()
        self._batches = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches = batch_idx + 1
        if time.monotonic() - self._last >= self.every_seconds:
            self._last = time.monotonic()
            self._print(f"{self._where()}  {self._metrics(pl_module)}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(f"{self._where()} done  {self._metrics(pl_module)}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._print(f"validation after epoch {trainer.current_epoch + 1}  {self._metrics(pl_module)}")


def progress_callback(stream=None) -> ProgressBar:
    """tqdm's bar when `stream` (stderr) is a terminal, plain periodic lines otherwise."""
    stream = sys.stderr if stream is None else stream
    is_tty = getattr(stream, "isatty", lambda: False)()
    return TQDMProgressBar(refresh_rate=10) if is_tty else PlainProgress()
