"""Where the training pipeline's time goes (tiny model by default).

1. The per-image data path in one process, one thread: JPEG decode in full vs reduced-size
   (draft) decode, for a photo-sized JPEG and for the benchmark's 512x384 ones, and each
   transform policy. Multiply by the batch size to compare with a step.
2. The wall-clock phases of the real pipeline's steps (train_throughput.py's pipeline contender),
   from Lightning's hooks, next to the bare loop's forward, backward and AdamW step; with
   --pyinstrument also a call tree of the main process (`pip install pyinstrument`: a benchmark
   tool, not a clipcls dependency).

    python benchmarks/profile_pipeline.py [--model tiny] [--size 224] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common
import pytorch_lightning as pl
import torch

from clipcls.data.images import load_image
from clipcls.data.transforms import build_transform


def per_image_ms(fn, items: list, repeats: int = 3) -> float:
    """Median over `repeats` passes of the mean milliseconds per item."""
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        passes.append((time.perf_counter() - start) / len(items) * 1000)
    return statistics.median(passes)


def data_path(tmp: Path, size: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker
    mean, std = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
    print(f"per-image data path at {size}x{size} (one process, one thread):")
    for label, shape in (("1600x1200 photo", (1600, 1200)), ("512x384 (benchmark data)", (512, 384))):
        folder = common.make_jpeg_folder(tmp / label.split()[0], ["c"], 12, size=shape)
        paths = sorted(str(p) for p in folder.rglob("*.jpg"))
        full = per_image_ms(lambda p: load_image(p), paths)
        draft = per_image_ms(lambda p: load_image(p, draft_size=(size, size)), paths)
        print(f"  decode {label:<26} full {full:6.2f} ms   reduced-size (draft) {draft:6.2f} ms")
    images = [load_image(p, draft_size=(size, size)) for p in paths]
    for augment in ("none", "flip", "trivialaugment", "randaugment"):
        transform = build_transform((size, size), mean, std, augment)
        print(f"  transform {augment:<15} {per_image_ms(transform, images):6.2f} ms")
    torch.set_num_threads(threads)


class PhaseTimer(pl.Callback):
    """Wall-clock phases of every training step, from Lightning's hooks:
    between steps (fetching the batch, progress bar, loggers, callbacks), forward + loss (the
    training_step), backward, and the optimizer phase (non-finite check, clipping, AdamW,
    scheduler, logit-scale clamp)."""

    def __init__(self, skip: int) -> None:
        self.skip, self.marks, self.phases = skip, {}, {}

    def _mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._mark("start")
        if "end" in self.marks and batch_idx > self.skip:
            self.phases.setdefault("between steps (data, progress bar, loggers)", []).append(
                self.marks["start"] - self.marks["end"]
            )

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._mark("before_backward")

    def on_after_backward(self, trainer, pl_module) -> None:
        self._mark("after_backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._mark("end")
        if batch_idx >= self.skip:
            m = self.marks
            for name, seconds in (
                ("forward + loss (training_step)", m["before_backward"] - m["start"]),
                ("backward", m["after_backward"] - m["before_backward"]),
                ("optimizer phase (checks, clipping, AdamW)", m["end"] - m["after_backward"]),
            ):
                self.phases.setdefault(name, []).append(seconds)


class ProfileWindow(pl.Callback):
    """pyinstrument over the main process from batch `start` to batch `end` (inclusive)."""

    def __init__(self, start: int, end: int) -> None:
        from pyinstrument import Profiler

        self.profiler = Profiler(interval=0.002)
        self.start, self.end = start, end

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.start:
            self.profiler.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.end:
            self.profiler.stop()


def bare_phases(module, batch: int, size: int, steps: int) -> dict[str, list[float]]:
    """The bare loop's forward + loss, backward and fused AdamW step, timed separately."""
    from clipcls.model.loss import total_loss

    cfg, model = dict(module.hparams.config), module.model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"], fused=True)
    pixels, labels = torch.randn(batch, 3, size, size), torch.arange(batch) % len(module.class_names)
    phases: dict[str, list[float]] = {}
    for i in range(steps + 1):
        t0 = time.perf_counter()
        out = model(pixels)
        loss = total_loss(out["text_logits"], out["head_logits"], labels, 0.5, 0.5, 0.1)["loss"]
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if i:  # the first step is warm-up
            for name, seconds in (("forward + loss", t1 - t0), ("backward", t2 - t1), ("AdamW step", t3 - t2)):
                phases.setdefault(name, []).append(seconds)
    return phases


def print_phases(title: str, phases: dict[str, list[float]]) -> None:
    total = sum(statistics.median(v) for v in phases.values())
    print(title)
    for name, values in phases.items():
        ms = statistics.median(values) * 1000
        print(f"  {name:<46} {ms:8.1f} ms  {ms / total / 10:5.1f} %")
    print(f"  {'sum of medians':<46} {total * 1000:8.1f} ms")


def profile_steps(tmp: Path, args: argparse.Namespace) -> None:
    from train_throughput import StepTimer, make_setup

    from clipcls.data.splits import load_splits as prepare_data
    from clipcls.training.datamodule import ClipDataModule
    from clipcls.training.module import build_module
    from clipcls.training.trainer import build_trainer

    args.warmup, args.measure, args.workers = 2, args.steps, args.workers
    setup = make_setup(args, tmp)
    data = prepare_data(setup.cfg)
    module = build_module(setup.cfg, data.class_names, data.descriptions)
    cfg = {**setup.cfg, "run_name": "profile", "sampler": "random", "augment": args.augment}
    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    trainer = build_trainer(cfg, Path(cfg["output_dir"]) / "profile")
    phases = PhaseTimer(skip=2)
    trainer.callbacks += [phases, StepTimer(2 + args.steps, module.model.clip.text_model)]
    if args.pyinstrument:
        window = ProfileWindow(2, 2 + args.steps - 1)
        trainer.callbacks.append(window)
    trainer.fit(module, datamodule=datamodule)
    print_phases(
        f"\npipeline, {args.steps} steps ({args.model}, {args.size}px, batch 32, augment {args.augment}, "
        f"{datamodule.workers} loader workers, {torch.get_num_threads()} intra-op threads):",
        phases.phases,
    )
    print_phases(
        f"bare loop, same model and batch ({torch.get_num_threads()} threads):",
        bare_phases(module, 32, args.size, args.steps),
    )
    if args.pyinstrument:
        print(window.profiler.output_text(unicode=False, color=False, show_all=False)[: args.chars])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "vitb32"], default="tiny")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the pipeline's)")
    parser.add_argument("--augment", default="trivialaugment")
    parser.add_argument("--pyinstrument", action="store_true", help="also print a pyinstrument call tree")
    parser.add_argument("--chars", type=int, default=12000, help="how much of the call tree to print")
    args = parser.parse_args(argv)
    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        data_path(Path(tmp), args.size)
        profile_steps(Path(tmp), args)
    common.print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
