"""The LightningModule: wires a built CLIP classifier, the loss, metrics and optimiser to the
Trainer. The network itself is constructed elsewhere (`clipcls.model.classifier.build_classifier`),
so loading, exporting and zero-shot need no Lightning."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from clipcls.data.dataset import Batch
from clipcls.errors import ClipclsError
from clipcls.inference.scoring import default_scorer
from clipcls.model.classifier import ClipClassifier
from clipcls.model.loss import total_loss

log = logging.getLogger("clipcls.training")
LOSS_KEYS = ("sim_weight", "fc_weight", "label_smoothing")
MAX_SKIPPED_STEPS_IN_A_ROW = 25  # a loss non-finite this often is divergence, not a bad batch


def is_image_param(name: str) -> bool:
    """A parameter of the image tower or its projection (names as in `model.clip`)."""
    return name.startswith(("vision_model.", "visual_projection."))


class TrainingDiverged(ClipclsError):
    """The loss stayed non-finite: stop rather than skip steps forever."""


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "weighted_f1": MulticlassF1Score(num_classes, average="weighted"),
        },
        prefix=prefix,
    )


def warmup_cosine(total_steps: int, warmup_steps: int, time_fraction: Callable[[], float] | None = None):
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at `total_steps`.

    With a time budget (`max_minutes`), `time_fraction` returns the share of it spent so far and
    the cosine follows whichever of steps and time runs out first: sized by epochs alone, a run
    stopped by the clock would end at a high learning rate, never having decayed. (A closure, not
    a callable object: LambdaLR saves an object's attributes into the checkpoint.)
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if time_fraction is not None:
            progress = max(progress, time_fraction())
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def image_layer_scales(model: ClipClassifier, decay: float) -> dict[int, float]:
    """Layer-wise lr decay (BEiT, ELECTRA): {id(param): lr factor} for the image tower, `decay`
    to the power of the parameter's depth below the top (1 for the projection and final norm,
    `decay` for the last block, ... `decay ** (L + 1)` for the patch and position embeddings).
    The family adapter says which block a parameter belongs to."""
    if decay == 1.0:
        return {}
    depth = model.adapter.image_depth(model.clip)
    scales = {}
    for name, param in model.clip.named_parameters():
        block = model.adapter.image_block(name, depth)
        if block is not None:
            scales[id(param)] = decay ** (depth + 1 - block)
    return scales


def param_groups(model: ClipClassifier, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """AdamW parameter groups: no weight decay on biases, norms and the logit scale, the head at
    `lr * head_lr_multiplier`, and the image tower's blocks at `layer_decay ** depth` (each
    group's "kind" says which: "head", "towers" or "image x<factor>"; the LP-FT schedule reads it).

    The cosine head's class directions are unit vectors (elements ~ 1/sqrt(dim), ~0.09 for a
    128-wide embedding) that AdamW moves by about the group's lr a step, so a head lr of ~1e-3
    turns them within a run whatever the logit scale (`clipcls.model.heads.CosineHead`)."""
    multiplier = float(cfg.get("head_lr_multiplier", 1.0))
    # with one lr and no LP stage the head joins the towers' groups: the seed's two groups
    # (decay / no decay), so its runs resume
    separate = multiplier != 1.0 or int(cfg.get("lp_epochs", 0)) > 0
    head = {id(p) for p in model.head.parameters()} if separate else set()
    layers = image_layer_scales(model, float(cfg.get("layer_decay", 1.0)))
    groups: dict[tuple[str, float, bool], list[torch.nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in head:
            key = ("head", multiplier)
        elif id(param) in layers:
            key = (f"image x{layers[id(param)]:.4g}", layers[id(param)])
        else:
            key = ("towers", 1.0)
        groups.setdefault((*key, param.ndim >= 2), []).append(param)
    return [
        {
            "params": params,
            "kind": name,  # not "name": the LR monitor would rename its logged keys
            "weight_decay": cfg["optim_weight_decay"] if decay else 0.0,
            "lr": cfg["lr"] * factor,
        }
        for (name, factor, decay), params in sorted(
            groups.items(), key=lambda item: (item[0][0] == "head", item[0][1], not item[0][2])
        )
    ]


def lp_ft_schedule(total: int, warmup: int, lp_steps: int, time_fraction=None):
    """The LR multiplier of the towers under LP-FT: 0 for the first `lp_steps` (the head alone
    trains: the linear probe), then warm-up and cosine over the remaining steps, as a run of
    that length would have. (The head's groups keep `warmup_cosine` over the whole run.)"""
    rest = warmup_cosine(max(1, total - lp_steps), warmup, time_fraction)

    def factor(step: int) -> float:
        return 0.0 if step < lp_steps else rest(step - lp_steps)

    return factor


def _logit_offset(config: dict[str, Any], class_counts: list[int] | None) -> torch.Tensor | None:
    """`tau * log(training class frequency)` for the logit-adjusted loss; None when it is off."""
    tau = float(config.get("logit_adjustment", 0.0))
    if tau == 0:
        return None
    if not class_counts or min(class_counts) < 1:
        raise ClipclsError(f"logit_adjustment needs every class's training image count, got {class_counts!r}")
    counts = torch.tensor(class_counts, dtype=torch.float32)
    return tau * torch.log(counts / counts.sum())


class ClipClassifierModule(pl.LightningModule):
    """Trains `net`. Everything a checkpoint needs to rebuild it is in `hparams` (plain types
    only): the resolved config, the class names in training order and their descriptions."""

    def __init__(
        self,
        net: ClipClassifier,
        config: dict[str, Any],
        class_names: list[str],
        descriptions: dict[str, list[str]],
        class_counts: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.image_mean, self.image_std = net.image_mean, net.image_std
        self.model = net  # the name fixes the checkpoint's state_dict prefix, "model."
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes
        self.val_metrics = _metrics(len(class_names), "val/")
        self.val_per_class = MulticlassF1Score(len(class_names), average="none")
        self.skipped_in_a_row = 0
        self.register_buffer("logit_offset", _logit_offset(config, class_counts), persistent=False)
        self.scorer = default_scorer(config)  # what validation scores and the checkpoint is chosen on
        self.lp_epochs = int(config.get("lp_epochs", 0))
        self.l2sp_weight = float(config.get("l2sp_weight", 0.0))
        # L2-SP's anchor: the image tower's starting (pretrained) weights, never saved (a resumed
        # run rebuilds them from the base model, as build_module loads it before the checkpoint)
        self.l2sp_anchor: dict[str, torch.Tensor] = {}
        if self.l2sp_weight > 0:
            self.l2sp_anchor = {
                name: param.detach().clone() for name, param in net.clip.named_parameters() if is_image_param(name)
            }

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
            logit_offset=self.logit_offset,
        )
        return {
            **losses,
            **out,
            "preds": out[f"{self.scorer}_logits"].argmax(1),
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
        global RNG state nor the draws of earlier steps were saved. Under DDP every process has
        its own stream (the rank joins the key; rank 0 keeps the single-process one), or all would
        sample the same descriptions and drop the same units."""
        key = [self.hparams.config["seed"], self.global_step, batch_idx]
        if self.global_rank:
            key.append(self.global_rank)
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]))

    def on_train_epoch_start(self) -> None:
        """LP-FT: in the first `lp_epochs` epochs only the head trains (every other parameter's
        gradient is off, so its weights, moments and weight decay stand still); afterwards the
        parameters that trained before train again."""
        if self.lp_epochs <= 0:
            return
        if not hasattr(self, "_trainable"):
            self._trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        probing = self.current_epoch < self.lp_epochs
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in self._trainable and (name.startswith("head.") or not probing))

    def l2sp_penalty(self) -> torch.Tensor | None:
        """L2-SP (Li et al., ICML 2018): `l2sp_weight * sum ||w - w_pretrained||^2` over the image
        tower, pulling the fine-tune toward its start instead of toward zero; None when off."""
        if not self.l2sp_anchor:
            return None
        params = dict(self.model.clip.named_parameters())
        total = sum(((params[n] - w.to(params[n].device)) ** 2).sum() for n, w in self.l2sp_anchor.items())
        return self.l2sp_weight * total

    def training_step(self, batch: Batch, batch_idx: int):
        readable = self._readable(batch, "train")  # False: every image of the batch was unreadable
        out = self.shared_step(batch) if readable else None
        # under DDP a process that skipped alone would leave the others waiting in backward's
        # all-reduce: every process skips when any must
        finite = readable and bool(torch.isfinite(out["loss"]))
        reduce = self.trainer.strategy.reduce_boolean_decision
        if reduce(not finite, all=False):
            # every process is here: a second flag (off the hot path) makes them name one reason
            non_finite = reduce(readable and not finite, all=False)
            self._skip_step(batch_idx, "non-finite loss" if non_finite else "no readable image")
            if self.trainer.world_size == 1:
                return None  # Lightning skips backward and the update
            # Lightning refuses None under DDP: a zero loss keeps every process's backward (and its
            # gradient all-reduce) in step, and on_before_optimizer_step drops the gradients. A
            # process with no readable image runs a blank one for that, as it has nothing else.
            if out is None:
                size = (self.hparams.config["img_transform_size_H"], self.hparams.config["img_transform_size_W"])
                out = self.model(torch.zeros(1, 3, *size, device=self.device))
            self._drop_gradients = True
            return (out["text_logits"].sum() + out["head_logits"].sum()) * 0.0
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
        penalty = self.l2sp_penalty()
        if penalty is not None:
            self.log("train/l2sp", penalty.detach(), batch_size=batch_size)
            return out["loss"] + penalty
        return out["loss"]

    def _skip_step(self, batch_idx: int, reason: str = "non-finite loss") -> None:
        """Warn about a skipped step and count the non-finite ones in a row (the caller skips the
        update: None on one process, a zero loss and dropped gradients under DDP)."""
        if reason != "non-finite loss":  # an unreadable batch is no sign of divergence
            pl.utilities.rank_zero_warn(
                f"{reason} at step {self.global_step} (batch {batch_idx}) on some process: step skipped"
            )
            return None
        self.skipped_in_a_row += 1
        where = " on some process" if self.trainer.world_size > 1 else ""
        pl.utilities.rank_zero_warn(
            f"non-finite loss at step {self.global_step} (batch {batch_idx}){where}: step skipped, weights unchanged"
        )
        if self.skipped_in_a_row >= MAX_SKIPPED_STEPS_IN_A_ROW:
            first = self.global_step - self.skipped_in_a_row + 1
            raise TrainingDiverged(
                f"training diverged: the loss was not finite for {self.skipped_in_a_row} steps in a row "
                f"(steps {first} to {self.global_step}); lower the learning rate or check the data"
            )
        return None

    def on_before_optimizer_step(self, optimizer) -> None:
        """Non-finite gradients (from a finite loss) skip the whole optimizer step: every gradient
        is dropped, so AdamW leaves every weight, moment and step count as it was. (Zeroing only
        the bad tensors would still move the others, and decay all of them.) Under DDP the
        gradients are already all-reduced, so every process decides alike."""
        if getattr(self, "_drop_gradients", False):  # a step every process agreed to skip
            self._drop_gradients = False
            for p in self.parameters():
                p.grad = None
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        # one fused norm of all gradients is finite when every gradient is: ~10x cheaper than a
        # per-tensor scan (0.14 s a step for ViT-B/32 on a CPU core)
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        pl.utilities.rank_zero_warn(f"non-finite gradients at step {self.global_step}: optimizer step skipped")
        for p in self.parameters():
            p.grad = None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.model.clamp_logit_scale()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if not self._readable(batch, "val"):
            return
        out = self.shared_step(batch)
        self.val_metrics.update(out["preds"], out["targets"])
        self.val_per_class.update(out["preds"], out["targets"])
        self.log("val/loss", out["loss"], batch_size=len(out["targets"]), sync_dist=True)

    def validation_metrics(self) -> dict[str, torch.Tensor]:
        """The epoch's validation metrics, gathered over processes.

        Macro F1 is the plain mean of the per-class F1 over every class, as scikit-learn reports
        it in metrics.json: torchmetrics' macro average leaves out a class absent from both
        predictions and targets, so the checkpoint would be chosen on a different number."""
        per_class = self.val_per_class.compute()
        metrics = {**self.val_metrics.compute(), "val/macro_f1": per_class.mean()}
        metrics.update({f"val/f1/{name}": f1 for name, f1 in zip(self.class_names, per_class)})
        return metrics

    def on_validation_epoch_end(self) -> None:
        metrics = self.validation_metrics()
        self.log_dict({k: v for k, v in metrics.items() if not k.startswith("val/f1/")}, prog_bar=True)
        self.log_dict({k: v for k, v in metrics.items() if k.startswith("val/f1/")})
        self.val_metrics.reset()
        self.val_per_class.reset()

    def configure_optimizers(self):
        cfg = self.hparams.config
        optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg),
            lr=cfg["lr"],
            betas=tuple(cfg["optim_betas"]),
            eps=cfg["optim_eps"],
            fused=self._fused_optimizer() or None,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(cfg["warmup_ratio"] * total))
        schedule = warmup_cosine(total, warmup, self._time_fraction())
        if self.lp_epochs > 0:  # the towers' schedule starts when the linear probe ends
            lp_steps = total * min(self.lp_epochs, cfg["epochs"]) // max(1, cfg["epochs"])
            towers = lp_ft_schedule(total, warmup, lp_steps, self._time_fraction())
            schedule = [schedule if g["kind"] == "head" else towers for g in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _time_fraction(self) -> Callable[[], float] | None:
        """The share of `max_minutes` spent training, read from the Trainer's Timer (whose elapsed
        time a resumed run restores); None without a time budget."""
        from pytorch_lightning.callbacks import Timer

        minutes = self.hparams.config.get("max_minutes")
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if not minutes or timer is None:
            return None
        return lambda: timer.time_elapsed("train") / (60.0 * minutes)

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
    config: dict[str, Any],
    class_names: list[str],
    descriptions: dict[str, list[str]],
    class_counts: list[int] | None = None,
) -> ClipClassifierModule:
    """The LightningModule around the classifier `config` describes, as a training run makes it
    (`class_counts`: training images per class, for `logit_adjustment`)."""
    from clipcls.model.classifier import build_classifier

    net = build_classifier(config, class_names, descriptions)
    if config.get("compile"):  # in place, so parameter names (and checkpoints) stay the same
        net.clip.vision_model.compile()
    return ClipClassifierModule(net, config, class_names, descriptions, class_counts)
