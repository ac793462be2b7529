"""The measurements of `gpu_suite.py`: CLIP-shaped random models, the bare loop, the pipeline's
Trainer.fit, FLOPs, peak memory, the largest batch, the loader alone and prediction.

Every function works on a CUDA device and on the CPU (the suite's `--quick` mode), so that the CPU
test of the suite runs the same code as the GPU run; only memory figures need CUDA.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import common  # noqa: F401  (puts the project root on sys.path)
import numpy as np
import pytorch_lightning as pl
import torch

from clipcls.data.dataset import Batch

# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; matched in order on the
# device name, so the more specific names come first
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM ("H100 80GB HBM3")
    ("H200", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.2),
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A CLIP architecture with random weights, the input size it is trained at, and its batch."""

    name: str
    vision: dict  # CLIPVisionConfig fields
    text: dict  # CLIPTextConfig fields
    projection_dim: int
    size: int  # training input side (other than the native 224: position embeddings interpolate)
    batch: int


B32_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32)
B16_VISION = {**B32_VISION, "patch_size": 16}
L14_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14)
B_TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)

SPECS = {
    "B/32@224": ModelSpec("B/32@224", B32_VISION, B_TEXT, 512, 224, 256),
    "B/16@224": ModelSpec("B/16@224", B16_VISION, B_TEXT, 512, 224, 256),
    "L/14@224": ModelSpec("L/14@224", L14_VISION, L_TEXT, 768, 224, 128),
    "B/32@512": ModelSpec("B/32@512", B32_VISION, B_TEXT, 512, 512, 128),
    "tiny@64": ModelSpec("tiny@64", {}, {}, 0, 64, 8),  # --quick: the built-in tiny CLIP
}


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s (None when unknown: no MFU then)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- data and models -----------------------------------------------------------------------------
def _write_jpegs(job: tuple[str, list[str], int, int]) -> None:
    root, names, start, stop = job
    for i in range(start, stop):
        common.make_jpeg_folder(Path(root) / f"part{i}", [names[i % len(names)]], 1, seed=i)


def make_jpeg_set(root: Path, names: list[str], total: int, unique: int, processes: int) -> Path:
    """`root/train/<class>/<i>.jpg`: `unique` distinct 512x384 JPEGs (made in parallel), hard-linked
    up to `total` files. A link costs the loader as much as a distinct file (read, decode), and
    keeps the set quick to make and small on disk."""
    train = root / "train"
    chunks = np.array_split(np.arange(unique), max(1, processes))
    jobs = [(str(root / "parts"), names, int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)]
    if processes > 1:
        with get_context("fork").Pool(processes) as pool:
            pool.map(_write_jpegs, jobs)
    else:
        list(map(_write_jpegs, jobs))
    sources = sorted((root / "parts").glob("part*/*/*.jpg"))
    for i in range(total):
        source = sources[i % len(sources)]
        folder = train / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").hardlink_to(source)
    return train


def build_model_dir(spec: ModelSpec, out_dir: Path, texts: list[str]) -> str:
    """A random-weight CLIP of `spec` saved like a Hub checkpoint (the built-in tiny for tiny@64)."""
    if spec.name.startswith("tiny"):
        return "tiny"
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = common.word_tokenizer(texts)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = {**spec.text, "bos_token_id": eot - 1, "eos_token_id": eot, "pad_token_id": eot}
    config = CLIPConfig(
        text_config=text,
        vision_config={**spec.vision, "image_size": 224},
        projection_dim=spec.projection_dim,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init on the GPU: seconds, not a minute, for L/14
        model = CLIPModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor().save_pretrained(out_dir)
    del model
    return str(out_dir)


# --- the bare loop -------------------------------------------------------------------------------
class BareLoop:
    """The pipeline's model, loss, gradient clipping and AdamW on a batch already on the device:
    forward and loss under bf16 autocast (what Lightning's bf16-mixed does), nothing else."""

    def __init__(self, module, device: torch.device, bf16: bool) -> None:
        self.module, self.device, self.bf16 = module, device, bf16
        self.model = module.model.to(device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        cfg = module.hparams.config
        self.clip = cfg["grad_clip"]
        # bf16-mixed: the pipeline's AdamW is the default (foreach) one, as here
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg["lr"], betas=tuple(cfg["optim_betas"]), eps=cfg["optim_eps"], fused=not bf16 or None
        )

    def batch(self, size: int, image_side: int) -> Batch:
        classes = len(self.module.class_names)
        pixels = torch.randn(size, 3, image_side, image_side, device=self.device)
        labels = torch.arange(size, device=self.device) % classes
        return Batch(pixels, labels, torch.arange(size, device=self.device), [])

    def loss(self, batch: Batch) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.module.shared_step(batch)["loss"]

    def step(self, batch: Batch) -> None:
        loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()

    def images_per_s(self, batch: Batch, warmup: int, measure: int) -> float:
        for _ in range(warmup):
            self.step(batch)
        sync(self.device)
        start = time.perf_counter()
        for _ in range(measure):
            self.step(batch)
        sync(self.device)
        return measure * len(batch.labels) / (time.perf_counter() - start)

    def flops(self, batch: Batch) -> int:
        """FLOPs of one training step's forward and backward (torch.utils.flop_counter)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.loss(batch).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())

    def peak_memory(self, batch: Batch, steps: int = 3) -> int | None:
        """Peak bytes allocated over `steps` steps with a fresh optimizer state (CUDA only)."""
        if self.device.type != "cuda":
            return None
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)
        free_memory(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        for _ in range(steps):
            self.step(batch)
        sync(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))

    def fits(self, size: int, image_side: int) -> bool:
        """Whether a training step of `size` images fits in device memory."""
        try:
            self.step(self.batch(size, image_side))
            sync(self.device)
            ok = True
        except torch.cuda.OutOfMemoryError:
            ok = False
        except RuntimeError as err:  # cuBLAS and cuDNN report a failed allocation in their own words
            if not any(word in str(err) for word in ("out of memory", "ALLOC_FAILED")):
                raise
            ok = False
        self.optimizer.zero_grad(set_to_none=True)
        free_memory(self.device)
        return ok


def largest_fitting(fits: Callable[[int], bool], start: int, cap: int, refine: int = 3) -> tuple[int, int | None]:
    """(largest size found to fit, smallest found not to; None if `cap` fits): doubling from
    `start` (halving when it does not fit), then `refine` bisections between the two."""
    low, high = 0, None
    size = start
    while size <= cap:
        if fits(size):
            low = size
            if size == cap:
                break
            size = min(size * 2, cap)
        else:
            high = size
            if low or size == 1:
                break
            size //= 2
    for _ in range(refine if high is not None and low else 0):
        middle = (low + high) // 2
        if middle in (low, high):
            break
        if fits(middle):
            low = middle
        else:
            high = middle
    return low, high


# --- the pipeline ---------------------------------------------------------------------------------
class StepClock(pl.Callback):
    """Wall time of the pipeline's steps after `warmup` (device synchronised at both ends; the
    steps in between run as they do in training), and of its first step; stops the fit."""

    def __init__(self, warmup: int, measure: int, device: torch.device) -> None:
        self.warmup, self.measure, self.device = warmup, measure, device
        self.started = time.perf_counter()
        self.first_step_s = self.seconds = float("nan")
        self.images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.first_step_s = time.perf_counter() - self.started
        if batch_idx == self.warmup - 1:
            sync(self.device)
            self.t0 = time.perf_counter()
        elif batch_idx >= self.warmup:
            self.images += len(batch.labels) if batch.labels is not None else 0
        if batch_idx == self.warmup + self.measure - 1:
            sync(self.device)
            self.seconds = time.perf_counter() - self.t0
            trainer.should_stop = True


def pipeline_images_per_s(
    module, data, cfg: dict, warmup: int, measure: int, device: torch.device, group: int = 1
) -> dict:
    """One Trainer.fit of the objects `python train.py` builds (ClipDataModule, build_trainer),
    without the checkpoint callbacks (the suite saves no model); images/s of its steps after
    `warmup`, including any wait for data. `group`: the device decoder's images per draw."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from clipcls.training.callbacks import LastCheckpoint
    from clipcls.training.datamodule import ClipDataModule
    from clipcls.training.trainer import build_trainer

    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    if datamodule.decoder is not None:
        datamodule.decoder.group = group
    trainer = build_trainer(cfg, Path(cfg["output_dir"]) / cfg["run_name"])
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, (ModelCheckpoint, LastCheckpoint))]
    clock = StepClock(warmup, measure, device)
    trainer.callbacks.append(clock)
    trainer.fit(module, datamodule=datamodule)
    del trainer, datamodule  # shuts the persistent loader workers down
    free_memory(device)
    return {"images_per_s": clock.images / clock.seconds, "first_step_s": clock.first_step_s}


# --- loader alone and prediction -------------------------------------------------------------------
def loader_images_per_s(data, cfg: dict, mean, std, batches: int, device: torch.device, group: int = 1) -> float:
    """Images/s of the training loader alone (the run's augmentation), after its first batch
    (worker start-up); with `decode: gpu` including the device's decode, resize and augmentation
    (one augmentation draw per `group` images)."""
    from clipcls.training.datamodule import ClipDataModule

    datamodule = ClipDataModule(data, cfg, mean, std)
    if datamodule.decoder is not None:
        datamodule.decoder.group = group
    iterator = iter(datamodule.train_dataloader())
    next(iterator)
    images = 0
    sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        batch = datamodule.transfer_batch_to_device(next(iterator), device, 0)
        images += len(batch.labels) if batch.labels is not None else 0
    sync(device)
    seconds = time.perf_counter() - start
    del iterator, datamodule
    return images / seconds


def predict_images_per_s(module, paths, cfg: dict, batch: int, device: torch.device, workers: int | None) -> float:
    """`clipcls predict`'s path without the CSV: inference_loader -> Predictor, after one batch."""
    from clipcls.data.loaders import inference_loader
    from clipcls.inference.predictor import Predictor
    from clipcls.inference.trained_model import TrainedModel

    size = (cfg["img_transform_size_H"], cfg["img_transform_size_W"])
    trained = TrainedModel(
        classifier=module.model,
        class_names=module.class_names,
        descriptions=dict(module.hparams.descriptions),
        image_size=size,
        image_mean=module.image_mean,
        image_std=module.image_std,
        config=cfg,
    )
    predictor = Predictor(trained, device=device)
    loader = inference_loader(paths, None, size, module.image_mean, module.image_std, batch, workers, device)
    images, start = 0, None
    for batch_ in loader:
        predictor.probabilities(predictor.logits(batch_.pixels))
        if start is None:
            start = time.perf_counter()  # after the first batch: workers started, model warm
            continue
        images += len(batch_.pixels)
    module.model.train()
    return images / (time.perf_counter() - start) if images else float("nan")
