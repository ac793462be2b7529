"""Pretrain the miniature CLIP on the world with the standard symmetric CLIP loss (Lightning).

    python -m clipcls.world.pretrain --out DIR [--minutes 22] [--seed 0] [--threads 2]

Why a pool: painting is the slow half of a step on a 2-core machine, so a pool of pictures is
painted once and every draw re-captions a picture with fresh wording (and mirrors it, with the
caption's left/right and top/bottom swapped). The learning rate follows warm-up + cosine over
the time budget, not a step count, so a slower machine ends its schedule just the same.
The result is a `save_pretrained` directory (model, tokenizer, image processor) plus
`training.json` with the command, seed, wall time, pairs seen and final loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from clipcls.world import model as mini
from clipcls.world.captions import caption
from clipcls.world.render import render_scene
from clipcls.world.scene import Scene, pretraining_scene

_MIRROR = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


def mirrored(scene: Scene, across: str) -> Scene:
    """The scene flipped left-right (`across`='x') or top-bottom ('y'): positions swap sides."""
    if scene.mark is None or scene.mark.position is None:
        return scene
    swap = ("left", "right") if across == "x" else ("top", "bottom")
    position = " ".join(_MIRROR[w] if w in swap else w for w in scene.mark.position.split())
    return dataclasses.replace(scene, mark=dataclasses.replace(scene.mark, position=position))


def render_pool(seed: int, size: int) -> tuple[torch.Tensor, list[Scene]]:
    """Paint `size` pretraining scenes: a (N, 3, 64, 64) uint8 tensor and the scenes."""
    scenes = [pretraining_scene(seed, i) for i in range(size)]
    pixels = np.stack([render_scene(s, mini.IMAGE_SIDE) for s in scenes])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), scenes


def pool_stats(pixels: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1], saved in the image processor."""
    x = pixels[:2000].float() / 255
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()


class CaptionedPool(IterableDataset):
    """Endless batches: random pool pictures, randomly mirrored, each given a fresh caption."""

    def __init__(
        self,
        pixels: torch.Tensor,
        scenes: list[Scene],
        tokenizer,
        batch_size: int,
        mean: list[float],
        std: list[float],
        seed: int,
    ) -> None:
        self.pixels, self.scenes, self.tokenizer = pixels, scenes, tokenizer
        self.batch_size, self.seed = batch_size, seed
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch of normalised pixels and tokenised captions."""
        index = rng.integers(len(self.scenes), size=self.batch_size)
        flip_x, flip_y = rng.random(self.batch_size) < 0.5, rng.random(self.batch_size) < 0.5
        images = self.pixels[torch.from_numpy(index)].clone()
        images[flip_x] = images[flip_x].flip(-1)
        images[flip_y] = images[flip_y].flip(-2)
        texts = []
        for i, fx, fy in zip(index, flip_x, flip_y):
            scene = self.scenes[i]
            scene = mirrored(scene, "x") if fx else scene
            scene = mirrored(scene, "y") if fy else scene
            texts.append(caption(scene, rng))
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        pixel_values = (images.float() / 255 - self.mean) / self.std
        return {
            "pixel_values": pixel_values,
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
        }

    def __iter__(self):
        rng = np.random.default_rng([self.seed, 99])
        while True:
            yield self.batch(rng)


class ClipPretraining(pl.LightningModule):
    """Wires a CLIPModel to the Trainer: CLIP loss, AdamW, warm-up + cosine over wall time."""

    def __init__(self, net: torch.nn.Module, lr: float, minutes: float, warmup: float = 0.04):
        super().__init__()
        self.net, self.lr, self.budget_s, self.warmup = net, lr, 60 * minutes, warmup
        self.start = time.monotonic()
        self.losses: list[float] = []
        self.pairs = 0

    def lr_at(self, progress: float) -> float:
        """Linear warm-up over the first `warmup` of the budget, then cosine to zero."""
        if progress < self.warmup:
            return self.lr * max(progress / self.warmup, 0.01)
        done = min((progress - self.warmup) / (1 - self.warmup), 1.0)
        return self.lr * 0.5 * (1 + math.cos(math.pi * done))

    def on_train_start(self) -> None:
        self.start = time.monotonic()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        elapsed = time.monotonic() - self.start
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = self.lr_at(elapsed / self.budget_s)
        loss = self.net(**batch, return_loss=True).loss
        self.losses.append(float(loss.detach()))
        self.pairs += len(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=False)
        if batch_idx % 50 == 0:
            print(
                f"step {batch_idx} {elapsed / 60:.1f} min loss {self.losses[-1]:.3f} "
                f"pairs/s {self.pairs / max(elapsed, 1e-9):.0f}",
                flush=True,
            )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=0.1)


def pretrain(
    out: Path, minutes: float, seed: int, pool_size: int, batch_size: int, lr: float, patch_size: int
) -> dict[str, object]:
    """Paint the pool, train for `minutes`, save the model; return what training.json records."""
    began = time.monotonic()
    pl.seed_everything(seed, workers=True, verbose=False)
    tokenizer = mini.build_tokenizer()
    net = mini.build_clip(tokenizer, patch_size=patch_size, seed=seed)
    pixels, scenes = render_pool(seed, pool_size)
    painted_s = time.monotonic() - began
    mean, std = pool_stats(pixels)
    data = CaptionedPool(pixels, scenes, tokenizer, batch_size, mean, std, seed)
    task = ClipPretraining(net, lr, minutes)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_time={"minutes": minutes},
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
    )
    trainer.fit(task, DataLoader(data, batch_size=None, num_workers=0))
    mini.save(net, tokenizer, mini.image_processor(mean, std), out)
    return {
        "seed": seed,
        "minutes": minutes,
        "pool_size": pool_size,
        "batch_size": batch_size,
        "lr": lr,
        "patch_size": patch_size,
        "parameters": sum(p.numel() for p in net.parameters()),
        "steps": trainer.global_step,
        "pairs_seen": task.pairs,
        "pool_paint_s": round(painted_s, 1),
        "wall_s": round(time.monotonic() - began, 1),
        "final_loss": round(float(np.mean(task.losses[-20:])), 4),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m clipcls.world.pretrain", description="Pretrain the miniature CLIP on the world."
    )
    parser.add_argument("--out", required=True, help="save_pretrained directory to write")
    parser.add_argument("--minutes", type=float, default=22.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0, help="world stream and initialisation")
    parser.add_argument("--pool", type=int, default=20000, help="pictures painted up front")
    parser.add_argument("--batch", type=int, default=256, help="pairs per contrastive batch")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    parser.add_argument("--patch", type=int, default=8, help="ViT patch size in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    record = pretrain(out, args.minutes, args.seed, args.pool, args.batch, args.lr, args.patch)
    record["command"] = "python -m clipcls.world.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
