"""Images/s of `clipcls predict` on an fp32 and an INT8 OpenVINO export, side by side in one run,
next to the accuracy figures the INT8 export recorded (clipcls_graph.json "quantization").

The two exports come from the same model (`clipcls export --format openvino` with and without
`--int8`). Each `clipcls predict` run goes in-process through `predict.main` (model load,
decoding, CSV written, as a user would), the two alternating round by round at batch 1 and 32;
the median images/s per export and the INT8/fp32 ratio are printed. On a small model and a small
folder a whole run is mostly model compile, JPEG decoding and CSV, so the graph alone is timed as
well: the same preprocessed images through each export's `logits`, alternating, batch 1 and 32.

    .venv/bin/python benchmarks/int8_throughput.py /tmp/int8_exports/fp32 /tmp/int8_exports/int8 \\
        /tmp/int8_demo/val --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_machine  # noqa: E402


def run_predict(model: Path, images: Path, batch: int, out: Path) -> float:
    """Seconds for one `clipcls predict` over the folder (model load included)."""
    from clipcls.commands import predict

    start = time.perf_counter()
    status = predict.main([str(model), str(images), "--out", str(out), "--batch-size", str(batch)])
    assert status == 0, status
    return time.perf_counter() - start


def graph_rates(models: dict[str, Path], images: Path, rounds: int) -> dict[tuple[str, int], list[float]]:
    """Images/s of the graphs alone (preprocessing done once beforehand), alternating exports."""
    import numpy as np

    from clipcls.data.inputs import collect_inputs
    from clipcls.inference.onnx_predictor import OnnxPredictor

    predictors = {name: OnnxPredictor(model) for name, model in models.items()}
    first = next(iter(predictors.values()))
    pixels = np.stack([first.preprocess(p) for p in collect_inputs([str(images)]).paths])
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for batch in (1, 32):
            for name, predictor in predictors.items():
                start = time.perf_counter()
                for lo in range(0, len(pixels), batch):
                    predictor.logits(pixels[lo : lo + batch])
                rates.setdefault((name, batch), []).append(len(pixels) / (time.perf_counter() - start))
    return rates


def print_medians(title: str, rates: dict[tuple[str, int], list[float]]) -> None:
    print(f"\n{title}: median images/s (INT8 / fp32 at the same batch)")
    for batch in (1, 32):
        fp32, int8 = (statistics.median(rates[(name, batch)]) for name in ("fp32", "int8"))
        print(f"  batch {batch:2d}  fp32 {fp32:8.1f}  int8 {int8:8.1f}  x{int8 / fp32:.2f}")


def print_accuracy(int8: Path) -> None:
    """The fp32 vs INT8 figures measured at export time."""
    quant = json.loads((int8 / "clipcls_graph.json").read_text())["quantization"]
    print(f"calibration: {quant['calibration']}")
    ev = quant.get("evaluation")
    if ev is None:
        print("no evaluation recorded (export without a labelled folder)")
        return
    print(f"fp32 vs INT8 on {ev['images']} images of {ev['folder']}")
    for name in ev["fp32"]:
        f, i = ev["fp32"][name], ev["int8"][name]
        print(
            f"  {name:9s} accuracy {f['accuracy']:.4f} -> {i['accuracy']:.4f}  "
            f"macro F1 {f['macro_f1']:.4f} -> {i['macro_f1']:.4f}  agreement {ev['top1_agreement'][name]:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path, help="clipcls export --format openvino")
    parser.add_argument("int8", type=Path, help="clipcls export --format openvino --int8 ...")
    parser.add_argument("images", type=Path, help="folder of images to predict")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    print_accuracy(args.int8)
    count = sum(1 for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"{count} images in {args.images}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    models = {"fp32": args.fp32, "int8": args.int8}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_predict(args.fp32, args.images, 32, root / "warm.csv")  # page cache warm
        rates: dict[tuple[str, int], list[float]] = {}
        for rnd in range(args.rounds):
            for batch in (1, 32):
                for name, model in models.items():
                    rate = count / run_predict(model, args.images, batch, root / f"{name}.csv")
                    rates.setdefault((name, batch), []).append(rate)
                    load = os.getloadavg()[0]
                    print(f"round {rnd + 1} batch {batch:2d} {name:5s} {rate:8.1f} images/s (load {load:.2f})")
    print_medians("clipcls predict (whole run)", rates)
    print_medians("graph only (preprocessed inputs)", graph_rates(models, args.images, args.rounds))


if __name__ == "__main__":
    main()
