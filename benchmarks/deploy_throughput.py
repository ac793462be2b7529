"""Images/s of `clipcls predict` with PyTorch vs ONNX Runtime vs OpenVINO, side by side in one run.

The same model (the built-in tiny CLIP at its native 64 px, zero-shot head for the demo's 7
classes) is exported three ways: HF (run by PyTorch), ONNX and OpenVINO; `clipcls predict` runs on
the same demo JPEGs at batch 1 and 32, the contenders alternating round by round, each run
in-process through `predict.main` (CSV written, as a user would). Median images/s per contender
and the ratios to PyTorch at the same batch size are printed.

    .venv/bin/clipcls demo-data --out /tmp/demo2k --scale 2.33     # ~2,000 JPEGs
    .venv/bin/python benchmarks/deploy_throughput.py /tmp/demo2k --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_machine  # noqa: E402


def build_exports(root: Path, image_size: int) -> dict[str, Path]:
    """The tiny CLIP as an HF export, an ONNX export and an OpenVINO export."""
    import torch

    from clipcls.commands import export
    from clipcls.data.demo import DEMO_CLASSES
    from clipcls.export.huggingface import export_model
    from clipcls.inference.trained_model import TrainedModel
    from clipcls.model.classifier import ClipClassifier
    from clipcls.model.loading import load_clip

    torch.manual_seed(0)
    parts = load_clip("tiny")
    names = list(DEMO_CLASSES)
    descs = {n: [f"a photo of wallpaper with {n.replace('_', ' ')}"] for n in names}
    clf = ClipClassifier(
        parts.model, parts.tokenizer, names, descs, image_mean=parts.image_mean, image_std=parts.image_std
    )
    size = (image_size, image_size)
    hf = export_model(TrainedModel(clf.eval(), names, descs, size, parts.image_mean, parts.image_std), root / "hf")
    for fmt in ("onnx", "openvino"):
        assert export.main([str(hf), "--out", str(root / fmt), "--format", fmt]) == 0
    return {"pytorch": hf, "onnxruntime": root / "onnx", "openvino": root / "openvino"}


def run_predict(model: Path, images: Path, batch: int, out: Path) -> float:
    """Seconds for one `clipcls predict` over the folder (model load included)."""
    from clipcls.commands import predict

    start = time.perf_counter()
    status = predict.main([str(model), str(images), "--out", str(out), "--batch-size", str(batch)])
    assert status == 0, status
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of JPEGs (clipcls demo-data --out DIR --scale 2.33)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="input size (tiny CLIP's native 64 px)")
    args = parser.parse_args()
    print_machine()
    count = sum(1 for _ in args.images.rglob("*.jpg"))
    print(f"{count} JPEGs in {args.images}; input {args.size} px; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_exports(root, args.size)
        run_predict(models["onnxruntime"], args.images, 32, root / "warm.csv")  # page cache warm
        rates: dict[tuple[str, int], list[float]] = {}
        for rnd in range(args.rounds):
            for batch in (1, 32):
                for name, model in models.items():
                    seconds = run_predict(model, args.images, batch, root / f"{name}.csv")
                    rates.setdefault((name, batch), []).append(count / seconds)
                    load = os.getloadavg()[0]
                    print(
                        f"round {rnd + 1} batch {batch:2d} {name:12s} {count / seconds:8.1f} images/s (load {load:.2f})"
                    )
    print("\nmedian images/s (ratio to pytorch at the same batch)")
    for batch in (1, 32):
        base = statistics.median(rates[("pytorch", batch)])
        for name in models:
            rate = statistics.median(rates[(name, batch)])
            print(f"  batch {batch:2d}  {name:12s} {rate:8.1f}  x{rate / base:.2f}")


if __name__ == "__main__":
    main()
