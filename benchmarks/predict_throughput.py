"""Prediction throughput: `clipcls predict` on N JPEGs vs a bare inference loop, side by side.

  predict  `clipcls predict RUN_DIR FOLDER --out preds.csv`, in-process (`clipcls.predict.main`),
           timed end to end: loading the trained model, listing the folder, decoding and
           transforming every JPEG in DataLoader workers, the forward passes, softmax and the CSV.
  bare     the same classifier's forward under inference_mode on a preprocessed batch already in
           memory (the first `--batch` images of the folder), repeated until N images are scored:
           the compute alone.
The model is a real run directory: `python train.py`'s code trains it for one short epoch first.
Rounds alternate the two; the median images/s and the paired ratio are reported.

    python benchmarks/predict_throughput.py [--model tiny] [--images 2000] [--size 224]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402
import torch  # noqa: E402

from cfg import CFG  # noqa: E402
from clipcls.model.tiny import cache_dir  # noqa: E402


def train_run(tmp: Path, model: str, size: int) -> Path:
    """A run directory from one short epoch of the real training entry point."""
    from clipcls.commands.train import main as train_main

    names = common.class_names(19)
    descs = common.descriptions(names)
    data = common.make_jpeg_folder(tmp / "train", names, per_class=3, seed=1)
    yaml_file = common.write_descriptions(tmp / "descriptions.yaml", descs)
    texts = [t for v in descs.values() for t in v]
    model_name = "tiny" if model == "tiny" else str(common.build_vit_b32(cache_dir() / "bench-vit-b32-random", texts))
    cfg = dataclasses.asdict(CFG())
    cfg.update(
        train_dataset_dir=str(data),
        class_description_yaml_file=str(yaml_file),
        model_name=model_name,
        img_transform_size_W=size,
        img_transform_size_H=size,
        epochs=1,
        test_size=19 / 57,
        batch_size=32,
        output_dir=str(tmp / "runs"),
        run_name="bench",
        accelerator="cpu",
        devices=1,
        augment="none",
        checkpoint_every_n_steps=None,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        status = train_main(common.cfg_flags(cfg), CFG)
    if status != 0:
        raise RuntimeError(f"training the benchmark model failed with status {status}")
    return tmp / "runs" / "bench"


def run_predict(run_dir: Path, folder: Path, out: Path, batch: int, workers: int | None) -> float:
    """Wall seconds of one `clipcls predict` run, in-process."""
    from clipcls.commands.predict import main as predict_main

    flags = [str(run_dir), str(folder), "--out", str(out), "--batch-size", str(batch)]
    flags += ["--workers", str(workers)] if workers is not None else []
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        status = predict_main(flags)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"clipcls predict exited with {status}")
    return seconds


def bare_loop(run_dir: Path, folder: Path, images: int, batch: int, threads: int) -> float:
    """Wall seconds of the forward passes alone for `images` images, batch after batch."""
    from clipcls.data.inputs import collect_inputs
    from clipcls.inference.predictor import Predictor
    from clipcls.inference.trained_model import load_trained

    predictor = Predictor(load_trained(run_dir), "cpu")
    paths = collect_inputs([str(folder)]).paths[:batch]
    pixels = torch.stack([predictor.preprocess(p) for p in paths])
    torch.set_num_threads(threads)
    with torch.inference_mode():
        predictor.classifier(pixels)  # warm-up
        start = time.perf_counter()
        for first in range(0, images, batch):
            predictor.classifier(pixels[: min(batch, images - first)])
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "vitb32"], default="tiny")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="clipcls predict --workers (default: its own)")
    args = parser.parse_args(argv)
    common.print_machine()
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        tmp = Path(tmp)
        run_dir = train_run(tmp, args.model, args.size)
        per_class = -(-args.images // 19)
        folder = common.make_jpeg_folder(tmp / "new", common.class_names(19), per_class, seed=2)
        files = sorted(folder.rglob("*.jpg"))
        for extra in files[args.images :]:
            extra.unlink()
        rounds = []
        for r in range(args.rounds):
            result = {}
            for name in ["predict", "bare"] if r % 2 == 0 else ["bare", "predict"]:
                if name == "predict":
                    seconds = run_predict(run_dir, folder, tmp / f"preds-{r}.csv", args.batch, args.workers)
                else:
                    seconds = bare_loop(run_dir, folder, args.images, args.batch, default_threads)
                torch.set_num_threads(default_threads)
                result[name] = args.images / seconds
                print(
                    f"round {r} {name}: {result[name]:.1f} images/s ({seconds:.2f} s, load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            rounds.append(result)
        rows = sum(1 for _ in open(tmp / "preds-0.csv", encoding="utf-8")) - 1
        ratios = [r["predict"] / r["bare"] for r in rounds]
        print(
            f"\nmodel {args.model} at {args.size}px, {args.images} JPEGs (512x384), batch {args.batch}, "
            f"{rows} CSV rows per predict run"
        )
        for name in ("predict", "bare"):
            values = [r[name] for r in rounds]
            print(
                f"  {name:<8} {common.median(values):8.1f} images/s (rounds: {', '.join(f'{v:.1f}' for v in values)})"
            )
        print(f"  ratio predict / bare: {common.median(ratios):.3f} (rounds: {', '.join(f'{v:.3f}' for v in ratios)})")
    common.print_machine()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
