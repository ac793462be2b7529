"""`clipcls export --format openvino`: the ONNX probability graph converted to OpenVINO's IR.

The graph is the one `clipcls.export.onnx` writes, passed through `openvino.convert_model` and
saved in fp32 (`compress_to_fp16=False`: fp16 weights would break parity with PyTorch). The
directory holds model.xml + model.bin, preprocessing.json and clipcls_graph.json; `clipcls
predict` and `clipcls serve` run it with OpenVINO's CPU plugin, forced to fp32 as well.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from clipcls.export.huggingface import ExportError
from clipcls.export.onnx import ONNX_FILE, PARITY_TOLERANCE, ProbabilityGraph, example_pixels, write_graph_files
from clipcls.export.onnx import write_onnx as write_onnx_graph
from clipcls.inference.onnx_predictor import OUTPUT_NAMES, OpenVinoSession
from clipcls.inference.trained_model import TrainedModel
from clipcls.io import atomic_directory
from clipcls.optional import require

IR_FILE = "model.xml"  # with model.bin beside it


def write_ir(onnx_path: Path, xml_path: Path) -> None:
    """Convert the ONNX graph to OpenVINO IR (fp32 weights)."""
    ov = require("openvino", "OpenVINO export")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def parity(model: TrainedModel, xml_path: Path, pixels: torch.Tensor) -> float:
    """Max |probability difference| between OpenVINO on `xml_path` and PyTorch on `pixels`."""
    with torch.no_grad():
        expected = [t.numpy() for t in ProbabilityGraph(model.classifier.cpu().eval())(pixels)]
    got = OpenVinoSession(xml_path, threads=torch.get_num_threads()).run(pixels.numpy())
    return float(max(np.abs(got[name] - want).max() for name, want in zip(OUTPUT_NAMES, expected)))


def export_openvino(
    model: TrainedModel,
    out: str | os.PathLike,
    overwrite: bool = False,
    finish: Callable[[Path], None] | None = None,
) -> float:
    """Write the OpenVINO export to `out` atomically; returns the measured max probability
    difference with PyTorch (an export above `PARITY_TOLERANCE` is refused). `finish(tmp)` runs
    last on the complete temporary directory (INT8 quantisation rewrites the model there), so
    its failure, too, leaves nothing at `out`."""
    require("openvino", "OpenVINO export")  # fail before the slow ONNX trace
    out = Path(out)
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_onnx_graph(model, tmp / ONNX_FILE)
            write_ir(tmp / ONNX_FILE, tmp / IR_FILE)
            (tmp / ONNX_FILE).unlink()
            diff = parity(model, tmp / IR_FILE, example_pixels(model, batch=3, seed=1))
            if not diff <= PARITY_TOLERANCE:
                raise ExportError(f"{out}: OpenVINO differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE:g})")
            write_graph_files(model, tmp, "openvino", IR_FILE)
            if finish is not None:
                finish(tmp)
    except FileExistsError as err:
        hint = "; pass --overwrite to replace it" if out.is_dir() else ""
        raise ExportError(f"{out} {err.strerror}{hint}") from None
    return diff
