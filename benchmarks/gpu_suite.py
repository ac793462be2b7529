"""GPU speed, one prepared command: prints one table and writes it as JSON.

For CLIP-shaped models with random weights (ViT-B/32 and ViT-B/16 at 224, ViT-L/14 at 224, ViT-B/32
at 512; text tower frozen; bf16-mixed) it measures, side by side in one process:
  bare         images/s of the model, loss, clipping and AdamW on a batch already on the device
  pipe cpu     images/s of the clipcls pipeline (`python train.py`'s objects, real 512x384 JPEGs,
               TrivialAugmentWide, Lightning) with `decode: cpu`; ratio to bare
  pipe gpu     the same with `decode: gpu` (JPEGs decoded and augmented on the device)
  MFU          model FLOP utilisation: FLOPs of one step (torch.utils.flop_counter) x steps/s
               over the device's dense bf16 peak, for bare and for the faster pipeline
  memory       peak bytes allocated by the bare step, without / with gradient checkpointing,
               and images/s with it
  max batch    the largest batch whose training step fits (doubling, then bisection)
  predict      images/s of `clipcls predict`'s path (inference_loader -> Predictor, fp32)
the loader alone (the run's augmentation) in images/s for 4, 8 and 16 workers with either decode,
and `compile: true` (torch.compile of the image tower) against eager for ViT-B/32 at 224.
Parts run in order of importance and are skipped once the time budget (default 450 s) would be
overrun, so the whole suite finishes in under 8 minutes; the JSON is rewritten after every part.

    python benchmarks/gpu_suite.py --out gpu_results          # on a CUDA machine
    python benchmarks/gpu_suite.py --quick --out /tmp/quick   # CPU, tiny model: the suite's test
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402  (also puts the project root on sys.path)
import gpu_measure as gm  # noqa: E402
import torch  # noqa: E402

from cfg import CFG  # noqa: E402
from clipcls.io import write_json  # noqa: E402

GPU_MODELS = ["B/32@224", "L/14@224", "B/16@224", "B/32@512"]


@dataclasses.dataclass
class Plan:
    """What one run measures, and how long each measurement runs."""

    models: list[str]
    device: torch.device
    warmup: int
    measure: int
    loader_workers: list[int]
    loader_batches: int
    predict_images: int
    batch_cap: int  # the largest-batch search stops here
    compile: bool
    budget_s: float

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            return cls(["tiny@64"], torch.device("cpu"), 1, 2, [0, 1], 2, 24, 0, args.compile, args.budget or 600)
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --quick for the CPU check")
        models = args.models.split(",") if args.models else GPU_MODELS
        return cls(models, torch.device("cuda"), 5, 15, [4, 8, 16], 12, 4096, 16384, True, args.budget or 450)


class Suite:
    """Runs the parts in order within the budget, and records every figure, error and skip."""

    def __init__(self, plan: Plan, out: Path, peak: float | None) -> None:
        self.plan, self.out, self.start = plan, out, time.perf_counter()
        self.results: dict = {
            "machine": common.machine(),
            "device": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "cpu",
            "peak_bf16_tflops": gm.peak_tflops(plan.device, peak),
            "plan": {k: str(v) if k == "device" else v for k, v in dataclasses.asdict(plan).items()},
            "models": {},
            "loader": [],
            "compile": {},
            "skipped": [],
            "errors": [],
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, name: str, needs_s: float, fn, *args):
        """fn(*args), unless fewer than `needs_s` seconds of the budget remain; an error is
        recorded and the suite goes on."""
        if self.elapsed() + needs_s > self.plan.budget_s:
            self.results["skipped"].append(f"{name} (time budget)")
            print(f"[{self.elapsed():6.1f} s] skipped {name}: time budget", flush=True)
            return None
        print(f"[{self.elapsed():6.1f} s] {name}", flush=True)
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - one failed part must not lose the others
            traceback.print_exc()
            self.results["errors"].append(f"{name}: {type(err).__name__}: {err}")
            return None
        finally:
            gm.free_memory(self.plan.device)
            self.save()

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        write_json(self.results, self.out / "gpu_suite.json")


def base_cfg(plan: Plan, spec: gm.ModelSpec, data_dir: Path, yaml_file: Path, runs: Path, model: str) -> dict:
    """The run's config: CFG's defaults (TrivialAugmentWide, AdamW, clipping, logging), bf16-mixed;
    a validation split of two images per class."""
    total = sum(1 for _ in data_dir.glob("*/*.jpg"))
    cfg = dataclasses.asdict(CFG())
    cfg.update(
        train_dataset_dir=str(data_dir),
        class_description_yaml_file=str(yaml_file),
        model_name=model,
        img_transform_size_H=spec.size,
        img_transform_size_W=spec.size,
        batch_size=spec.batch,
        precision="bf16-mixed",
        epochs=1,
        test_size=2 * 19 / total,
        output_dir=str(runs),
        run_name=spec.name.replace("/", "").replace("@", "-"),
        accelerator="gpu" if plan.device.type == "cuda" else "cpu",
        devices=1,
        num_workers=0 if plan.device.type == "cpu" else None,
        checkpoint_every_n_steps=None,
    )
    cfg["optim_betas"] = list(cfg["optim_betas"])
    return cfg


def measure_model(suite: Suite, spec: gm.ModelSpec, cfg: dict, row: dict) -> None:
    """Every figure of one model's row, most important first."""
    from clipcls.data.splits import load_splits
    from clipcls.training.module import build_module

    plan = suite.plan
    data = load_splits(cfg)
    module = build_module(cfg, data.class_names, data.descriptions)
    steps = (plan.warmup, plan.measure)
    for decode in ("cpu", "gpu"):
        run_cfg = {**cfg, "decode": decode, "run_name": f"{cfg['run_name']}-{decode}"}
        row[f"pipeline_{decode}"] = suite.run(
            f"{spec.name} pipeline decode {decode}",
            30,
            gm.pipeline_images_per_s,
            module,
            data,
            run_cfg,
            *steps,
            plan.device,
        )
    if spec is gm.SPECS[plan.models[0]]:  # the first model: also one augmentation draw per 16 images
        row["pipeline_gpu_grouped"] = suite.run(
            f"{spec.name} pipeline decode gpu, groups of 16",
            30,
            gm.pipeline_images_per_s,
            module,
            data,
            {**cfg, "decode": "gpu", "run_name": f"{cfg['run_name']}-gpu16"},
            *steps,
            plan.device,
            16,
        )
    loop = gm.BareLoop(module, plan.device, bf16=True)
    batch = loop.batch(spec.batch, spec.size)
    row["bare_images_per_s"] = suite.run(f"{spec.name} bare loop", 10, loop.images_per_s, batch, *steps)
    row["flops_per_step"] = suite.run(f"{spec.name} FLOPs", 5, loop.flops, batch)
    row["peak_memory_bytes"] = suite.run(f"{spec.name} peak memory", 5, loop.peak_memory, batch)
    module.model.clip.gradient_checkpointing_enable()
    row["peak_memory_bytes_checkpointing"] = suite.run(
        f"{spec.name} peak memory, checkpointing", 5, loop.peak_memory, batch
    )
    row["checkpointing_images_per_s"] = suite.run(f"{spec.name} checkpointing", 10, loop.images_per_s, batch, *steps)
    module.model.clip.gradient_checkpointing_disable()
    if plan.batch_cap:
        fits = functools.partial(loop.fits, image_side=spec.size)
        found = suite.run(f"{spec.name} largest batch", 40, gm.largest_fitting, fits, spec.batch, plan.batch_cap)
        row["largest_batch"], row["smallest_failing_batch"] = found or (None, None)
        del fits
    del loop, batch
    paths = data.train.paths
    count = min(plan.predict_images, len(paths))
    subset = [paths[i] for i in range(count)]
    row["predict_images_per_s"] = suite.run(
        f"{spec.name} predict", 15, gm.predict_images_per_s, module, subset, cfg, spec.batch, plan.device, None
    )
    if plan.compile and spec.name == "B/32@224":
        suite.results["compile"] = measure_compile(suite, spec, cfg, data, row)


def measure_compile(suite: Suite, spec: gm.ModelSpec, cfg: dict, data, eager: dict) -> dict:
    """`compile: true` (a fresh module built with it) against the eager figures of the same run."""
    from clipcls.training.module import build_module

    plan = suite.plan
    cfg = {**cfg, "compile": True, "decode": "cpu", "run_name": f"{cfg['run_name']}-compiled"}
    module = build_module(cfg, data.class_names, data.descriptions)
    loop = gm.BareLoop(module, plan.device, bf16=True)
    batch = loop.batch(spec.batch, spec.size)
    started = time.perf_counter()
    suite.run(f"{spec.name} compile (first steps)", 90, loop.step, batch)
    out = {"model": spec.name, "compile_s": round(time.perf_counter() - started, 1)}
    out["bare_images_per_s"] = suite.run(
        f"{spec.name} compiled bare", 10, loop.images_per_s, batch, plan.warmup, plan.measure
    )
    out["eager_bare_images_per_s"] = eager.get("bare_images_per_s")
    del loop, batch
    out["pipeline_cpu"] = suite.run(
        f"{spec.name} compiled pipeline",
        60,
        gm.pipeline_images_per_s,
        module,
        data,
        cfg,
        plan.warmup,
        plan.measure,
        plan.device,
    )
    out["eager_pipeline_cpu"] = eager.get("pipeline_cpu")
    return out


def measure_loader(suite: Suite, spec: gm.ModelSpec, cfg: dict) -> None:
    """The training loader alone at this model's input size, for each worker count and decode,
    with the run's augmentation; and the device decoder without augmentation and with one draw per
    16 images, which tells its decoding from its per-image augmentation."""
    from clipcls.data.splits import load_splits

    data = load_splits(cfg)
    workers = suite.plan.loader_workers
    configs = [(decode, count, cfg["augment"], 1) for decode in ("cpu", "gpu") for count in workers]
    middle = workers[len(workers) // 2]
    configs += [("gpu", middle, "none", 1), ("gpu", middle, cfg["augment"], 16)]
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # CLIP's
    for decode, count, augment, group in configs:
        run_cfg = {**cfg, "decode": decode, "num_workers": count, "augment": augment}
        rate = suite.run(
            f"loader {spec.size}px decode {decode} workers {count} augment {augment} group {group}",
            8,
            gm.loader_images_per_s,
            data,
            run_cfg,
            mean,
            std,
            suite.plan.loader_batches,
            suite.plan.device,
            group,
        )
        suite.results["loader"].append(
            {
                "size": spec.size,
                "batch": spec.batch,
                "decode": decode,
                "workers": count,
                "augment": augment,
                "group": group,
                "images_per_s": rate,
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU, tiny model, few steps: checks the suite runs")
    parser.add_argument("--out", type=Path, default=Path("gpu_suite_results"), help="folder of gpu_suite.json")
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(GPU_MODELS)}")
    parser.add_argument("--budget", type=float, help="seconds (default 450 on a GPU)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--compile", action="store_true", help="with --quick: also measure compile: true")
    args = parser.parse_args(argv)
    plan = Plan.for_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    suite = Suite(plan, args.out, args.peak_tflops)
    common.print_machine()
    specs = [gm.SPECS[name] for name in plan.models]
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        tmp = Path(tmp)
        names = common.class_names(19)
        descs = common.descriptions(names, words=30)
        yaml_file = common.write_descriptions(tmp / "descriptions.yaml", descs)
        texts = [d for v in descs.values() for d in v]
        total = max((plan.warmup + plan.measure + 3) * s.batch for s in specs) + 200
        processes = min(16, os.cpu_count() or 1) if plan.device.type == "cuda" else 1
        unique = 512 if plan.device.type == "cuda" else 40
        data_dir = suite.run("make JPEGs", 0, gm.make_jpeg_set, tmp / "data", names, total, unique, processes)
        loader_sizes: set[int] = set()
        for spec in specs:
            model = suite.run(
                f"{spec.name} build", 20, gm.build_model_dir, spec, tmp / spec.name.replace("/", ""), texts
            )
            if model is None:
                continue
            cfg = base_cfg(plan, spec, data_dir, yaml_file, tmp / "runs", model)
            row = suite.results["models"].setdefault(spec.name, {"batch": spec.batch, "size": spec.size})
            suite.run(f"{spec.name} measurements", 60, measure_model, suite, spec, cfg, row)
            if spec.size not in loader_sizes:
                loader_sizes.add(spec.size)
                suite.run(f"loader {spec.size}px", 20, measure_loader, suite, spec, cfg)
    suite.save()
    print("\n" + render(suite.results))
    print(f"\nwritten: {args.out / 'gpu_suite.json'} ({suite.elapsed():.0f} s)")
    return 0


# --- the table ----------------------------------------------------------------------------------
def _num(value, fmt: str = "{:.0f}") -> str:
    return "-" if value is None or value != value else fmt.format(value)


def _gib(value) -> str:
    return "-" if value is None else f"{value / 2**30:.1f}"


def _mfu(flops, rate, batch, peak) -> str:
    if not (flops and rate and peak):
        return "-"
    return f"{100 * flops * rate / batch / (peak * 1e12):.0f}%"


def _grouped(item: dict) -> str:
    return f" (one draw per {item['group']} images)" if item.get("group", 1) > 1 else ""


def render(results: dict) -> str:
    """The models table, the loader table and the compile line, as Markdown."""
    peak = results["peak_bf16_tflops"]
    lines = [
        f"device: {results['device']} (dense bf16 peak {_num(peak)} TFLOP/s)",
        "",
        "| model | batch | bare img/s | MFU bare | pipe cpu img/s (x bare) | pipe gpu img/s (x bare) | MFU pipe"
        " | peak GiB / ckpt | ckpt img/s | max batch | predict img/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        bare, flops, batch = row.get("bare_images_per_s"), row.get("flops_per_step"), row["batch"]
        pipes = {d: (row.get(f"pipeline_{d}") or {}).get("images_per_s") for d in ("cpu", "gpu")}
        best = max((r for r in pipes.values() if r), default=None)
        cells = [
            f"{_num(pipes[d])} ({_num(pipes[d] / bare if pipes[d] and bare else None, '{:.2f}')})"
            for d in ("cpu", "gpu")
        ]
        largest = row.get("largest_batch")
        limit = row.get("smallest_failing_batch")
        max_batch = "-" if largest is None else f"{largest}" + ("" if limit else "+")
        lines.append(
            f"| {name} | {batch} | {_num(bare)} | {_mfu(flops, bare, batch, peak)} | {cells[0]} | {cells[1]} "
            f"| {_mfu(flops, best, batch, peak)} | {_gib(row.get('peak_memory_bytes'))} / "
            f"{_gib(row.get('peak_memory_bytes_checkpointing'))} | {_num(row.get('checkpointing_images_per_s'))} "
            f"| {max_batch} | {_num(row.get('predict_images_per_s'))} |"
        )
    for name, row in results["models"].items():
        grouped, bare = (row.get("pipeline_gpu_grouped") or {}).get("images_per_s"), row.get("bare_images_per_s")
        if grouped:
            ratio = _num(grouped / bare if bare else None, "{:.2f}")
            lines.append(
                f"{name}: pipeline decode gpu, one augmentation draw per 16 images: {grouped:.0f} img/s (x{ratio})"
            )
    lines += ["", "| loader | decode | workers | augment | img/s |", "|---|---|---|---|---|"]
    for item in results["loader"]:
        lines.append(
            f"| {item['size']}px, batch {item['batch']} | {item['decode']} | {item['workers']} "
            f"| {item['augment']}{_grouped(item)} | {_num(item['images_per_s'])} |"
        )
    comp = results["compile"]
    if comp:
        bare, eager = comp.get("bare_images_per_s"), comp.get("eager_bare_images_per_s")
        pipe = (comp.get("pipeline_cpu") or {}).get("images_per_s")
        eager_pipe = (comp.get("eager_pipeline_cpu") or {}).get("images_per_s")
        lines += [
            "",
            f"compile ({comp['model']}): bare {_num(bare)} img/s vs eager {_num(eager)} "
            f"(x{_num(bare / eager if bare and eager else None, '{:.2f}')}); pipeline {_num(pipe)} vs "
            f"{_num(eager_pipe)} (x{_num(pipe / eager_pipe if pipe and eager_pipe else None, '{:.2f}')}); "
            f"first compiled step {_num(comp.get('compile_s'), '{:.1f}')} s",
        ]
    for key in ("skipped", "errors"):
        if results[key]:
            lines += ["", f"{key}:"] + [f"  {item}" for item in results[key]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
