"""The LightningModule: wires a built CLIP classifier, the loss, metrics and optimiser to the
Trainer. The network itself is constructed elsewhere (`clipcls.model.classifier.build_classifier`),
so loading, exporting and zero-shot need no Lightning."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from clipcls.data.dataset import Batch
from clipcls.errors import ClipclsError
from clipcls.model.classifier import ClipClassifier
from clipcls.model.loss import total_loss

log = logging.getLogger("clipcls.training")
LOSS_KEYS = ("sim_weight", "fc_weight", "label_smoothing")
MAX_SKIPPED_STEPS_IN_A_ROW = 25  # a loss non-finite this often is divergence, not a bad batch


class TrainingDiverged(ClipclsError):
    """The loss stayed non-finite: stop rather than skip steps forever."""


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "weighted_f1": MulticlassF1Score(num_classes, average="weighted"),
        },
        prefix=prefix,
    )


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class ClipClassifierModule(pl.LightningModule):
    """Trains `net`. Everything a checkpoint needs to rebuild it is in `hparams` (plain types
    only): the resolved config, the class names in training order and their descriptions."""

    def __init__(
        self, net: ClipClassifier, config: dict[str, Any], class_names: list[str], descriptions: dict[str, list[str]]
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.image_mean, self.image_std = net.image_mean, net.image_std
        self.model = net  # the name fixes the checkpoint's state_dict prefix, "model."
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes
        self.val_metrics = _metrics(len(class_names), "val/")
        self.val_per_class = MulticlassF1Score(len(class_names), average="none")
        self.skipped_in_a_row = 0

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(pixels)

    def shared_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss, predictions and targets for a batch: one code path for train, val and test."""
        out = self.model(batch.pixels)
        losses = total_loss(
            out["text_logits"],
            out["head_logits"],
            batch.labels,
            **{k: self.hparams.config[k] for k in LOSS_KEYS},
            contrastive_loss=self.model.contrastive_loss,
        )
        return {
            **losses,
            **out,
            "preds": out["head_logits"].argmax(1),
            "targets": batch.labels,
            "positions": batch.positions,
        }

    def _readable(self, batch: Batch, split: str) -> bool:
        """Report the batch's unreadable images (they are skipped); False when none was readable."""
        datamodule = getattr(self._trainer, "datamodule", None)
        dataset = getattr(datamodule, f"{split}_set", None)
        for position, reason in batch.failures:
            path = dataset.paths[position] if dataset is not None else f"#{position}"
            log.warning("skipping unreadable image: cannot load image %s: %s", path, reason)
        return batch.pixels is not None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Seed the step's random draws (description sampling, dropout) from (seed, step, batch):
        a resumed run then draws exactly what an uninterrupted one would, though neither the
        global RNG state nor the draws of earlier steps were saved."""
        key = [self.hparams.config["seed"], self.global_step, batch_idx]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]))

    def training_step(self, batch: Batch, batch_idx: int):
        if not self._readable(batch, "train"):  # every image of the batch was unreadable
            return None
        out = self.shared_step(batch)
        if not torch.isfinite(out["loss"]):
            return self._skip_step(batch_idx)
        self.skipped_in_a_row = 0
        batch_size = len(out["targets"])
        self.log_dict(
            {
                "train/loss": out["loss"],
                "train/contrastive": out["contrastive"],
                "train/cross_entropy": out["cross_entropy"],
            },
            prog_bar=False,
            batch_size=batch_size,
        )
        self.log("train/logit_scale", self.model.logit_scale().detach(), batch_size=batch_size)
        return out["loss"]

    def _skip_step(self, batch_idx: int) -> None:
        """Returning None makes Lightning skip backward and the weight update (single process;
        under DDP every rank would have to skip together)."""
        self.skipped_in_a_row += 1
        pl.utilities.rank_zero_warn(
            f"non-finite loss at step {self.global_step} (batch {batch_idx}): step skipped, weights unchanged"
        )
        if self.skipped_in_a_row >= MAX_SKIPPED_STEPS_IN_A_ROW:
            first = self.global_step - self.skipped_in_a_row + 1
            raise TrainingDiverged(
                f"training diverged: the loss was not finite for {self.skipped_in_a_row} steps in a row "
                f"(steps {first} to {self.global_step}); lower the learning rate or check the data"
            )
        return None

    def on_before_optimizer_step(self, optimizer) -> None:
        """Non-finite gradients (from a finite loss) are zeroed rather than written into weights."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        # one fused norm of all gradients is finite when every gradient is: ~10x cheaper than a
        # per-tensor scan (0.14 s a step for ViT-B/32 on a CPU core), which runs only if it is not
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        bad = [p for p in self.parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if bad:
            pl.utilities.rank_zero_warn(f"non-finite gradients at step {self.global_step}: zeroed")
            for p in bad:
                p.grad.zero_()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.model.clamp_logit_scale()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self._readable(batch, "val"):
            return
        out = self.shared_step(batch)
        self.val_metrics.update(out["preds"], out["targets"])
        self.val_per_class.update(out["preds"], out["targets"])
        self.log("val/loss", out["loss"], batch_size=len(out["targets"]), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        for name, f1 in zip(self.class_names, self.val_per_class.compute()):
            self.log(f"val/f1/{name}", f1)
        self.val_metrics.reset()
        self.val_per_class.reset()

    def configure_optimizers(self):
        cfg = self.hparams.config
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                # biases, norm weights and the scalar logit scale get no weight decay
                (no_decay if param.ndim < 2 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg["optim_weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg["lr"],
            betas=tuple(cfg["optim_betas"]),
            eps=cfg["optim_eps"],
            fused=self._fused_optimizer() or None,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(cfg["warmup_ratio"] * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _fused_optimizer(self) -> bool:
        """Fused AdamW (one kernel per update, 3-6x faster on CPU) where it exists and where
        Lightning allows it: its mixed-precision plugins refuse to clip a fused optimizer's gradients."""
        return self.device.type in ("cpu", "cuda") and "mixed" not in str(self.trainer.precision)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["clipcls"] = {
            "class_names": self.class_names,
            "class_to_idx": {name: i for i, name in enumerate(self.class_names)},
            "descriptions": dict(self.hparams.descriptions),
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "image_size": [self.hparams.config["img_transform_size_H"], self.hparams.config["img_transform_size_W"]],
        }


def build_module(
    config: dict[str, Any], class_names: list[str], descriptions: dict[str, list[str]]
) -> ClipClassifierModule:
    """The LightningModule around the classifier `config` describes, as a training run makes it."""
    from clipcls.model.classifier import build_classifier

    net = build_classifier(config, class_names, descriptions)
    if config.get("compile"):  # in place, so parameter names (and checkpoints) stay the same
        net.clip.vision_model.compile()
    return ClipClassifierModule(net, config, class_names, descriptions)
