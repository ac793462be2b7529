"""A faithful re-creation of the seed's training step, the (c) contender of train_throughput.py.

What the seed did at every step, and this re-creation does too:
- one image of every class (the dataset item is a tuple of N images, one per class), decoded in
  full with PIL (no reduced-size JPEG decoding) and augmented with TrivialAugmentWide on PIL;
- `CLIPProcessor(text=all class descriptions, images=the N images)` inside the step: the texts are
  tokenized and the images resized, cropped and normalised from PIL every step;
- the whole `CLIPModel` forward, so the frozen text tower re-encodes every description every step
  (frozen by `requires_grad_(False)`, so no backward through it: the cheaper of the two ways a
  tower can be frozen, which favours the seed);
- the N x N symmetric cross-entropy of the temperature-scaled cosine similarities plus the
  label-smoothed cross-entropy of the MLP head, 0.5/0.5; AdamW and cosine warm restarts;
- TensorBoard (tensorboardX) logging of every logit and every embedding value through Python
  loops, one `add_scalar` per element, every step.
The model, input size, batch (one image per class) and data loader workers are the same as in
the pipeline it is compared with, so the difference is the step's own work.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from clipcls.model.heads import build_head

SEED_TEMPERATURE = 1.072508  # the seed multiplied cosine similarities by this (see DESIGN.md)


class PerClassTuples(Dataset):
    """Item k: one random image of every class, as augmented PIL images, and their labels."""

    def __init__(self, paths_by_class: list[list[str]], size: tuple[int, int], length: int, seed: int = 0) -> None:
        self.paths_by_class = paths_by_class
        self.transform = v2.Compose([v2.Resize(size), v2.TrivialAugmentWide()])
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> tuple[list[Image.Image], list[int]]:
        rng = np.random.default_rng((self.seed, k))
        images = []
        for paths in self.paths_by_class:
            with Image.open(paths[int(rng.integers(len(paths)))]) as img:
                images.append(self.transform(img.convert("RGB")))
        return images, list(range(len(self.paths_by_class)))


def _first(batch: list):
    return batch[0]


def seed_loader(root: Path, class_names: list[str], size: tuple[int, int], steps: int, workers: int) -> DataLoader:
    """The seed's loader: batch_size 1 of per-class tuples (so N images per step)."""
    paths = [sorted(str(p) for p in (root / name).glob("*.jpg")) for name in class_names]
    dataset = PerClassTuples(paths, size, steps)
    return DataLoader(
        dataset, batch_size=1, shuffle=True, num_workers=workers, collate_fn=_first, persistent_workers=workers > 0
    )


class SeedStep:
    """The seed's model, optimizer, logger and step; `step(images, labels)` runs one step."""

    def __init__(
        self, model_dir: str, texts: list[str], num_classes: int, size: int, log_dir: str | None = None
    ) -> None:
        from tensorboardX import SummaryWriter
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel, CLIPProcessor

        self.clip = CLIPModel.from_pretrained(model_dir)
        # the processor resizes and crops to `size` (the checkpoint's own size for ViT-B/32 at 224)
        image_processor = CLIPImageProcessor.from_pretrained(
            model_dir, size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
        self.processor = CLIPProcessor(
            image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(model_dir)
        )
        self.resize = size != self.clip.config.vision_config.image_size
        self.clip.text_model.requires_grad_(False)
        self.clip.text_projection.requires_grad_(False)
        self.head = build_head("mlp", self.clip.config.projection_dim, num_classes)
        self.clip.train()
        self.head.train()
        params = [p for p in [*self.clip.parameters(), *self.head.parameters()] if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.optimizer, T_0=10)
        self.texts = texts
        self.writer = SummaryWriter(log_dir or tempfile.mkdtemp(prefix="seed-tb-"))
        self.global_step = 0
        self.phases: dict[str, list[float]] = defaultdict(list)  # seconds per step, for the breakdown
        self._text_start = 0.0
        self.clip.text_model.register_forward_pre_hook(self._text_started)
        self.clip.text_model.register_forward_hook(self._text_finished)

    def _text_started(self, module, args) -> None:
        self._text_start = time.perf_counter()

    def _text_finished(self, module, args, output) -> None:
        self.phases["text tower forward"].append(time.perf_counter() - self._text_start)

    def step(self, images: list[Image.Image], labels: list[int]) -> float:
        t0 = time.perf_counter()
        inputs = self.processor(text=self.texts, images=images, return_tensors="pt", padding=True, truncation=True)
        t1 = time.perf_counter()
        out = self.clip(**inputs, interpolate_pos_encoding=self.resize)
        image_embeds, text_embeds = out.image_embeds, out.text_embeds  # both L2-normalised
        logits = SEED_TEMPERATURE * image_embeds @ text_embeds.T
        targets = torch.tensor(labels)
        sim_loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        head_logits = self.head(image_embeds)
        fc_loss = F.cross_entropy(head_logits, targets, label_smoothing=0.1)
        loss = 0.5 * sim_loss + 0.5 * fc_loss
        t2 = time.perf_counter()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        t3 = time.perf_counter()
        self._log(loss, logits, image_embeds)
        t4 = time.perf_counter()
        self.global_step += 1
        text = self.phases["text tower forward"][-1]
        for name, seconds in (
            ("processor (tokenize + image preprocessing)", t1 - t0),
            ("image tower forward + losses", t2 - t1 - text),
            ("backward + AdamW step", t3 - t2),
            ("TensorBoard logging loops", t4 - t3),
        ):
            self.phases[name].append(seconds)
        return float(loss.detach())

    def _log(self, loss: torch.Tensor, logits: torch.Tensor, embeds: torch.Tensor) -> None:
        """The seed's per-step logging: one scalar per logit and per embedding value."""
        step = self.global_step
        self.writer.add_scalar("train/loss", loss.item(), step)
        for i in range(logits.shape[0]):
            for j in range(logits.shape[1]):
                self.writer.add_scalar(f"logits/image{i}/class{j}", logits[i, j].item(), step)
        for i in range(embeds.shape[0]):
            for k in range(embeds.shape[1]):
                self.writer.add_scalar(f"embeddings/image{i}/dim{k}", embeds[i, k].item(), step)

    def close(self) -> None:
        self.writer.close()
