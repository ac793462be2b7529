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

import torch

from clipcls.export.huggingface import ExportError
from clipcls.export.onnx import ONNX_FILE, PARITY_TOLERANCE, ProbabilityGraph, preprocessing_of, write_graph_files
from clipcls.export.onnx import write_onnx as write_onnx_graph
from clipcls.export.parity import check_parity as check_real_parity
from clipcls.inference.onnx_predictor import OpenVinoSession
from clipcls.inference.trained_model import TrainedModel
from clipcls.io import atomic_directory
from clipcls.optional import require

IR_FILE = "model.xml"  # with model.bin beside it


def write_ir(onnx_path: Path, xml_path: Path) -> None:
    """Convert the ONNX graph to OpenVINO IR (fp32 weights)."""
    ov = require("openvino", "OpenVINO export")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def check_parity(model: TrainedModel, xml_path: Path) -> float:
    """Refuse an export whose preprocessing or OpenVINO graph disagrees with PyTorch on real
    images, each side making its inputs its own way (`clipcls.export.parity`)."""
    session = OpenVinoSession(xml_path, threads=torch.get_num_threads())
    graph = ProbabilityGraph(model.classifier.cpu().eval())
    where = f"{xml_path} (OpenVINO)"
    return check_real_parity(model, preprocessing_of(model), session.run, graph, where, PARITY_TOLERANCE)


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
            diff = check_parity(model, tmp / IR_FILE)
            write_graph_files(model, tmp, "openvino", IR_FILE)
            if finish is not None:
                finish(tmp)
    except FileExistsError as err:
        hint = "; pass --overwrite to replace it" if out.is_dir() else ""
        raise ExportError(f"{out} {err.strerror}{hint}") from None
    return diff
