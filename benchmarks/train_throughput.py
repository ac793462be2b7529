"""Training throughput, side by side: the real pipeline vs the bare compute loop vs the seed's step.

Contenders, alternated round by round in one process (images/s = batch / median step time after
warm-up; ratios are paired within a round, then the median over rounds is reported):
  pipeline@32  files on disk as JPEGs -> load_image (reduced-size JPEG decode) -> v2 transforms
               (TrivialAugmentWide) -> DataLoader -> Lightning Trainer.fit -> ClipClassifierModule
               with our loss, gradient clipping, logging and callbacks: the objects `python
               train.py` builds (prepare_data, ClipClassifierModule, ClipDataModule, build_trainer).
               A step's time runs from one on_train_batch_end to the next, so it includes waiting
               for data.
  bare@32      the same ClipClassifier, batch, input size and loss on a tensor already in memory:
               forward, backward, AdamW step; nothing else.
  pipeline@19  the pipeline with the seed's sampler (one image per class per step, 19 classes).
  seed@19      the seed's step re-created (see seed_step.py).
It also counts text-encoder forwards during the pipeline's training steps (frozen text tower:
the description embeddings are computed once, so the count must be 0).

    python benchmarks/train_throughput.py --model tiny
    python benchmarks/train_throughput.py --model vitb32 --rounds 3 --warmup 2 --measure 4
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402  (also puts the project root on sys.path)
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from cfg import CFG  # noqa: E402
from clipcls.data.loaders import balance_cpu_threads, default_workers  # noqa: E402
from clipcls.data.splits import load_splits as prepare_data  # noqa: E402
from clipcls.model.loss import total_loss  # noqa: E402
from clipcls.model.tiny import cache_dir  # noqa: E402
from clipcls.training.datamodule import ClipDataModule  # noqa: E402
from clipcls.training.module import ClipClassifierModule, build_module  # noqa: E402
from clipcls.training.trainer import build_trainer  # noqa: E402


class StepTimer(pl.Callback):
    """Wall-clock stamps at every training batch end; stops the fit after `total` batches.

    Also counts forwards of the text encoder that happen inside training steps.
    """

    def __init__(self, total: int, text_model: torch.nn.Module) -> None:
        self.total = total
        self.stamps: list[float] = []
        self.in_step = False
        self.text_forwards = 0
        text_model.register_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        if self.in_step:
            self.text_forwards += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.in_step = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.in_step = False
        self.stamps.append(time.perf_counter())
        if len(self.stamps) >= self.total:
            trainer.should_stop = True


@dataclasses.dataclass
class Setup:
    cfg: dict
    data_dir: Path
    texts: list[str]
    names: list[str]
    model_dir: str


def make_setup(args: argparse.Namespace, tmp: Path) -> Setup:
    """Data on disk (19 classes of 512x384 JPEGs, 30-word descriptions), the model, the config."""
    names = common.class_names(19)
    descs = common.descriptions(names, words=30)
    texts = [d for v in descs.values() for d in v]
    steps = args.warmup + args.measure + 1
    per_class = max(4, -(-steps * 32 // 19) + 2)  # enough for one epoch of `steps` batches of 32
    data_dir = common.make_jpeg_folder(tmp / "train", names, per_class)
    yaml_file = common.write_descriptions(tmp / "descriptions.yaml", descs)
    model_dir = (
        "tiny" if args.model == "tiny" else str(common.build_vit_b32(cache_dir() / "bench-vit-b32-random", texts))
    )
    cfg = dataclasses.asdict(CFG())
    cfg.update(
        train_dataset_dir=str(data_dir),
        class_description_yaml_file=str(yaml_file),
        model_name=model_dir,
        img_transform_size_W=args.size,
        img_transform_size_H=args.size,
        epochs=1,
        test_size=20 / (per_class * len(names)),  # a validation split of one image per class
        output_dir=str(tmp / "runs"),
        accelerator="cpu",
        devices=1,
        num_workers=args.workers,
    )
    cfg["optim_betas"] = list(cfg["optim_betas"])
    return Setup(cfg, data_dir, texts, names, model_dir)


def run_pipeline(
    setup: Setup,
    module: ClipClassifierModule,
    data,
    sampler: str,
    warmup: int,
    measure: int,
    name: str,
    run: int,
    precision: str = "32-true",
) -> tuple[common.StepTimes, int]:
    """One Trainer.fit of warmup + measure steps; the measured steps' wall times."""
    cfg = {**setup.cfg, "sampler": sampler, "run_name": f"{name.replace('@', '-')}-{run}", "precision": precision}
    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    trainer = build_trainer(cfg, Path(cfg["output_dir"]) / cfg["run_name"])
    timer = StepTimer(warmup + measure, module.model.clip.text_model)
    trainer.callbacks.append(timer)
    trainer.fit(module, datamodule=datamodule)
    stamps = timer.stamps[warmup - 1 : warmup + measure]
    batch = len(setup.names) if sampler == "per_class" else cfg["batch_size"]
    del trainer, datamodule  # shuts the persistent DataLoader workers down before the next contender
    gc.collect()
    return common.StepTimes(name, batch, [b - a for a, b in zip(stamps, stamps[1:])]), timer.text_forwards


def bare_step(module: ClipClassifierModule, batch: int, size: int, threads: int, bf16: bool = False):
    """forward, loss, backward and AdamW step of the same model on an in-memory batch (forward
    and loss under bfloat16 autocast with `bf16`, as Lightning's bf16-mixed does on CPU)."""
    model, cfg = module.model, setup_cfg(module)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg["optim_weight_decay"]},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # the pipeline's optimizer (ClipClassifierModule.configure_optimizers): fused at full precision
    optimizer = torch.optim.AdamW(
        groups, lr=cfg["lr"], betas=tuple(cfg["optim_betas"]), eps=cfg["optim_eps"], fused=not bf16 or None
    )
    pixels = torch.randn(batch, 3, size, size)
    labels = torch.arange(batch) % len(module.class_names)

    def step() -> None:
        torch.set_num_threads(threads)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(pixels)
            loss = total_loss(
                out["text_logits"],
                out["head_logits"],
                labels,
                cfg["sim_weight"],
                cfg["fc_weight"],
                cfg["label_smoothing"],
            )["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def setup_cfg(module: ClipClassifierModule) -> dict:
    return dict(module.hparams.config)


SEED_PHASES: list[dict[str, float]] = []  # per seed round: median seconds of each part of its step


def seed_contender(setup: Setup, workers: int, steps: int, measure: int):
    """The seed's step with its own loader (same workers as the pipeline); returns step, closer."""
    from seed_step import SeedStep, seed_loader

    size = (setup.cfg["img_transform_size_H"], setup.cfg["img_transform_size_W"])
    model_dir = setup.model_dir if setup.model_dir != "tiny" else _tiny_dir()
    seed = SeedStep(model_dir, setup.texts, len(setup.names), size[0])
    loader = seed_loader(setup.data_dir, setup.names, size, steps, workers)
    iterator = iter(loader)

    def step() -> None:
        images, labels = next(iterator)
        seed.step(images, labels)

    def close() -> None:
        nonlocal iterator
        iterator = None
        seed.close()
        SEED_PHASES.append({k: common.median(v[-measure:]) for k, v in seed.phases.items()})

    return step, close


def _tiny_dir() -> str:
    from clipcls.model.tiny import tiny_clip_path

    return str(tiny_clip_path())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "vitb32"], default="tiny")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--measure", type=int, default=6)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the pipeline's)")
    parser.add_argument(
        "--contenders",
        default="pipeline@32,bare@32,pipeline@19,seed@19",
        help="comma-separated: pipeline|bare|seed, optionally -bf16 (bf16-mixed), @batch",
    )
    args = parser.parse_args(argv)
    common.print_machine()
    contenders = args.contenders.split(",")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        setup = make_setup(args, Path(tmp))
        data = prepare_data(setup.cfg)
        module = build_module(setup.cfg, data.class_names, data.descriptions)
        threads = torch.get_num_threads()  # the bare loop's: all cores, torch's default
        rounds, text_forwards = [], 0
        for r in range(args.rounds):
            results = {}
            order = contenders if r % 2 == 0 else contenders[::-1]  # alternate who goes first
            for name in order:
                results[name], calls = run_contender(name, setup, module, data, args, threads, r)
                text_forwards += calls
                print(
                    f"round {r} {name}: {results[name].images_per_s:.2f} images/s "
                    f"(threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            rounds.append({name: results[name] for name in contenders})
        print(
            f"\nmodel {args.model} at {args.size}px, {args.rounds} rounds x {args.measure} measured steps "
            f"after {args.warmup} warm-up; loader workers {pipeline_workers(setup)}"
        )
        pairs = [(a, b) for a, b in PAIRS if a in contenders and b in contenders]
        print(common.summarise(rounds, pairs))
        if SEED_PHASES:
            print("  the seed step's time, median seconds per step (median over rounds):")
            for phase in SEED_PHASES[0]:
                print(f"    {phase:<44} {common.median([p[phase] for p in SEED_PHASES]):7.3f} s")
        if any(c.startswith("pipeline") for c in contenders):
            print(f"  text-encoder forwards inside pipeline training steps: {text_forwards}")
        common.print_machine()
    return 0


PAIRS = [
    ("pipeline@32", "bare@32"),
    ("pipeline-bf16@32", "bare-bf16@32"),
    ("pipeline@19", "bare@19"),
    ("pipeline@19", "seed@19"),
    ("pipeline-bf16@19", "seed@19"),
]


def pipeline_workers(setup: Setup) -> int:
    """The loader workers the pipeline uses on CPU (ClipDataModule.setup's choice)."""
    return default_workers(setup.cfg["num_workers"], cpu_compute=True)


def run_contender(name: str, setup: Setup, module, data, args, threads: int, r: int) -> tuple[common.StepTimes, int]:
    kind, batch = name.split("@")
    kind, _, precision = kind.partition("-")
    batch, bf16 = int(batch), precision == "bf16"
    if kind == "pipeline":
        sampler = "per_class" if batch == len(setup.names) else "random"
        return run_pipeline(
            setup, module, data, sampler, args.warmup, args.measure, name, r, "bf16-mixed" if bf16 else "32-true"
        )
    if kind == "bare":
        torch.set_num_threads(threads)
        step = bare_step(module, batch, args.size, threads, bf16)
        return common.time_steps(step, batch, 1, args.measure, name), 0
    if kind == "seed":
        workers = pipeline_workers(setup)
        balance_cpu_threads(workers)  # the same cores for loading and compute as the pipeline
        step, close = seed_contender(setup, workers, args.warmup + args.measure + 1, args.measure)
        try:
            return common.time_steps(step, batch, args.warmup, args.measure, name), 0
        finally:
            close()
            gc.collect()
    raise ValueError(f"unknown contender {name}")


if __name__ == "__main__":
    raise SystemExit(main())
