"""`clipcls export --format onnx`: one graph from pixels to class probabilities.

The graph holds the image tower, the head and the class-description embeddings (computed once
here and baked in as a constant), so serving needs neither a tokenizer nor the text tower. It
outputs the probabilities of every scorer, `head`, `text` and `ensemble` (the mean of the two),
for any batch size. The directory:

    model.onnx           the graph (input `pixels`: N x 3 x H x W float32, normalised)
    preprocessing.json   how to make `pixels` from an image (size, mean, std, resize mode)
    clipcls_graph.json   class names in output order, descriptions, runtime, WiSE-FT alpha, source

It is checked with `onnx.checker` and, before it is kept, run through onnxruntime next to the
PyTorch model on the same inputs: probabilities must agree within `PARITY_TOLERANCE`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipcls.export.huggingface import ExportError
from clipcls.export.parity import check_parity as check_real_parity
from clipcls.inference.onnx_predictor import (
    GRAPH_FORMAT_VERSION,
    GRAPH_META,
    INPUT_NAME,
    OUTPUT_NAMES,
    PREPROCESSING,
    RESIZE_MODES,
    OnnxRuntimeSession,
    Preprocessing,
)
from clipcls.inference.scoring import default_scorer
from clipcls.inference.trained_model import TrainedModel
from clipcls.io import atomic_directory, write_json
from clipcls.model.classifier import ClipClassifier
from clipcls.optional import require

ONNX_FILE = "model.onnx"
OPSET = 18
PARITY_TOLERANCE = 1e-4  # max |p_onnx - p_torch| in fp32 (measured: ~1e-7 on the tiny and mini CLIPs)
SINGLE_FILE_LIMIT = 1_800_000_000  # protobuf's 2 GB cap: larger weights go to model.onnx.data


class ProbabilityGraph(nn.Module):
    """Pixels -> (head, text, ensemble) probabilities, with the class embeddings frozen as constants
    (the description texts never change after export). The description logits and probabilities
    are the family's own, as in PyTorch: scale (plus SigLIP's bias), softmax or sigmoid."""

    def __init__(self, classifier: ClipClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.sigmoid = classifier.text_probability == "sigmoid"
        with torch.no_grad():
            self.register_buffer("class_embeddings", classifier.class_embeddings().detach().clone())

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = self.classifier.encode_images(pixels)
        head = torch.softmax(self.classifier.head(image).float(), dim=-1)
        logits = self.classifier.similarity_logits(image, self.class_embeddings).float()
        text = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
        return head, text, (head + text) / 2


def preprocessing_of(model: TrainedModel) -> Preprocessing:
    """The evaluation preprocessing the model was trained with (size, mean/std, resize mode)."""
    size = (int(model.image_size[0]), int(model.image_size[1]))
    resize = model.config.get("resize", "squash")
    if resize not in RESIZE_MODES:
        raise ExportError(f"cannot export resize {resize!r}: the numpy preprocessing knows {', '.join(RESIZE_MODES)}")
    return Preprocessing(size, tuple(map(float, model.image_mean)), tuple(map(float, model.image_std)), resize)


def graph_meta(model: TrainedModel, runtime: str, model_file: str) -> dict[str, Any]:
    """The contents of clipcls_graph.json."""
    return {
        "format_version": GRAPH_FORMAT_VERSION,
        "runtime": runtime,
        "model_file": model_file,
        "input": INPUT_NAME,
        "outputs": list(OUTPUT_NAMES),
        "class_names": list(model.class_names),
        "class_to_idx": {name: i for i, name in enumerate(model.class_names)},
        "descriptions": {name: list(model.descriptions[name]) for name in model.class_names},
        "wise_alpha": model.wise_alpha,
        "default_scorer": default_scorer(model.config),  # what predictions read when no scorer is asked for
        "source": str(model.source) if model.source is not None else None,
        "opset": OPSET,
        "calibration": model.calibration,  # applied in numpy by OnnxPredictor, as by the torch Predictor
    }


def example_pixels(model: TrainedModel, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random normalised inputs of the model's size (for tracing and the parity check)."""
    height, width = (int(x) for x in model.image_size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


def write_onnx(model: TrainedModel, path: Path) -> None:
    """Trace the probability graph to `path` with a dynamic batch axis and check it."""
    onnx = require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")  # torch.onnx's exporter is written on it
    graph = ProbabilityGraph(model.classifier.cpu().eval()).eval()
    size = sum(p.numel() * p.element_size() for p in graph.parameters())
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's progress chatter and deprecation notes
        torch.onnx.export(
            graph,
            (example_pixels(model),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"pixels": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            external_data=size > SINGLE_FILE_LIMIT,
            verbose=False,
        )
    onnx.checker.check_model(str(path))
    add_metadata(onnx, path, model)


def add_metadata(onnx: Any, path: Path, model: TrainedModel) -> None:
    """Class names (in output order) inside the .onnx too, so the file alone is self-describing."""
    proto = onnx.load(str(path), load_external_data=False)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(list(model.class_names), ensure_ascii=False)
    onnx.save(proto, str(path))


def write_graph_files(model: TrainedModel, directory: Path, runtime: str, model_file: str) -> None:
    """preprocessing.json and clipcls_graph.json beside the graph."""
    write_json(preprocessing_of(model).to_json(), directory / PREPROCESSING)
    write_json(graph_meta(model, runtime, model_file), directory / GRAPH_META)


def check_parity(model: TrainedModel, path: Path) -> float:
    """Refuse an export whose preprocessing or graph disagrees with PyTorch on real images, each
    side making its inputs its own way (`clipcls.export.parity`; a batch of 4: not the traced 2)."""
    session = OnnxRuntimeSession(path, threads=torch.get_num_threads())
    graph = ProbabilityGraph(model.classifier.cpu().eval())
    where = f"{path} (onnxruntime)"
    return check_real_parity(model, preprocessing_of(model), session.run, graph, where, PARITY_TOLERANCE)


def export_onnx(model: TrainedModel, out: str | os.PathLike, overwrite: bool = False) -> float:
    """Write the ONNX export to `out` (atomically: a temporary directory swapped in at the end);
    returns the measured max probability difference with PyTorch."""
    out = Path(out)
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_onnx(model, tmp / ONNX_FILE)
            diff = check_parity(model, tmp / ONNX_FILE)
            write_graph_files(model, tmp, "onnxruntime", ONNX_FILE)
    except FileExistsError as err:
        hint = "; pass --overwrite to replace it" if out.is_dir() else ""
        raise ExportError(f"{out} {err.strerror}{hint}") from None
    return diff
