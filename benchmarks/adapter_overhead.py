"""Training speed of the adapter path vs the direct CLIP path it replaced, side by side.

Contenders, alternated round by round in one process on the same ClipClassifier, batch and input
(one training step = forward, our loss, backward, AdamW step; text tower frozen as by default):
  adapter   today's `ClipClassifier.encode_images`: the family adapter calls the model's own
            `get_image_features` (pooling and projection as transformers defines them)
  direct    the code before adapters: `visual_projection(vision_model(...).pooler_output)`,
            reaching into CLIPModel's internals
Steps alternate one by one (A B B A ...); the speed ratio adapter/direct is the median of
step-paired ratios (direct time / adapter time), by process CPU time (robust on a shared, loaded
machine) and by wall time. It should be 1 within noise: the same modules run; only the Python
call path differs.

    python benchmarks/adapter_overhead.py --model tiny --size 64 --steps 60
    python benchmarks/adapter_overhead.py --model vitb32 --steps 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402  (also puts the project root on sys.path)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clipcls.model.classifier import ClipClassifier, build_classifier  # noqa: E402
from clipcls.model.loss import total_loss  # noqa: E402


def direct_encode_images(net: ClipClassifier, pixels: torch.Tensor) -> torch.Tensor:
    """The pre-adapter image path, verbatim."""
    native = net.clip.config.vision_config.image_size
    resize = tuple(pixels.shape[-2:]) != (native, native)
    pooled = net.clip.vision_model(pixel_values=pixels, interpolate_pos_encoding=resize).pooler_output
    return F.normalize(net.clip.visual_projection(pooled), dim=-1)


def make_step(net: ClipClassifier, pixels: torch.Tensor, labels: torch.Tensor, direct: bool):
    """One training step with the adapter path or the direct one."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6, fused=True)

    def step() -> None:
        if direct:
            net.encode_images = lambda x: direct_encode_images(net, x)  # instance attribute shadows the method
        else:
            net.__dict__.pop("encode_images", None)
        out = net(pixels)
        loss = total_loss(out["text_logits"], out["head_logits"], labels, 0.5, 0.5, 0.1)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "vitb32"], default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="measured steps per contender")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common.print_machine()
    names = common.class_names(19)
    descs = common.descriptions(names)
    with tempfile.TemporaryDirectory() as tmp:
        texts = [t for ts in descs.values() for t in ts]
        source = "tiny" if args.model == "tiny" else str(common.build_vit_b32(Path(tmp) / "vitb32", texts))
        torch.manual_seed(0)
        net = build_classifier({"model_name": source}, names, descs).train()
        pixels = torch.randn(args.batch, 3, args.size, args.size)
        labels = torch.arange(args.batch) % len(names)
        with torch.no_grad():  # the two paths compute the same embedding
            same = torch.allclose(net.encode_images(pixels), direct_encode_images(net, pixels), atol=1e-6)
        print(
            f"model {args.model}, batch {args.batch}, {args.size} px, {args.threads} threads; same embeddings: {same}"
        )
        steps = {"adapter": make_step(net, pixels, labels, False), "direct": make_step(net, pixels, labels, True)}
        for name in steps:  # warm-up
            for _ in range(args.warmup):
                steps[name]()
        times = interleaved(steps, args.steps)
        print(report(times, args.batch))


def interleaved(steps: dict, count: int) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds of `count` steps per contender, alternating A B B A ... step
    by step, so load changes on a shared machine hit both alike. CPU time (both threads' work)
    is far less disturbed by other processes than wall time."""
    times = {name: {"wall": [], "cpu": []} for name in steps}
    names = list(steps)
    for i in range(count):
        for name in names if i % 2 == 0 else reversed(names):
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def report(times: dict[str, dict[str, list[float]]], batch: int) -> str:
    """Median step time per contender and the median of step-paired ratios, per clock."""
    lines = []
    for clock in ("cpu", "wall"):
        for name, t in times.items():
            lines.append(f"  {name:<8} {clock:<4} median step {common.median(t[clock]) * 1000:8.1f} ms")
        pairs = [d / a for a, d in zip(times["adapter"][clock], times["direct"][clock])]
        quart = np.percentile(pairs, [25, 75])
        lines.append(
            f"  speed ratio adapter/direct ({clock}, step-paired): median {common.median(pairs):.3f}, "
            f"IQR {quart[0]:.3f}-{quart[1]:.3f}, n={len(pairs)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
