"""`clipcls export --format openvino --int8`: post-training INT8 quantisation with NNCF.

The fp32 OpenVINO graph is written and checked against PyTorch first (as without `--int8`);
then `nncf.quantize` inserts INT8 quantisers whose ranges come from a calibration folder, and
the INT8 graph replaces model.xml/.bin in the export (preprocessing.json is unchanged, so
`clipcls predict` and `clipcls serve` run it as any OpenVINO export). INT8 trades accuracy for
speed, and by how much depends on the model and the data, so with a labelled folder the export
measures fp32 and INT8 side by side on it (accuracy and macro F1 per scorer) and stores the
figures in clipcls_graph.json under "quantization".

Calibration needs images, not labels: a class-folder tree or any folder of images will do. At
most `CALIBRATION_LIMIT` of them are used, spread evenly over the sorted file list (so every class
of a labelled folder is represented and the same folder always gives the same model).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.data.images import ImageLoadError
from clipcls.data.index import DatasetError, ImageIndex, index_folder, list_classes
from clipcls.data.inputs import collect_inputs
from clipcls.errors import ClipclsError
from clipcls.export.openvino import IR_FILE, export_openvino
from clipcls.inference.onnx_predictor import (
    GRAPH_META,
    OUTPUT_NAMES,
    PREPROCESSING,
    OpenVinoSession,
    Preprocessing,
    read_json,
)
from clipcls.inference.trained_model import TrainedModel
from clipcls.io import write_json
from clipcls.optional import require

CALIBRATION_LIMIT = 300  # images; NNCF's own default subset size, enough for activation ranges
EVAL_BATCH = 32


class QuantizationError(ClipclsError, ValueError):
    """A calibration or evaluation folder that cannot be used, naming it."""


@dataclass
class Int8Request:
    """What `--int8` was asked for: the calibration images and the labelled folder (if any) on
    which fp32 and INT8 are compared."""

    calibration: Path
    calibration_paths: list[str]
    eval_data: ImageIndex | None
    threads: int = 1
    report: dict[str, Any] = field(default_factory=dict)  # filled in by `quantize_export`


def labelled_index(folder: Path, class_names: list[str]) -> ImageIndex | None:
    """`folder` as a labelled set when its sub-folders are classes of the model, else None."""
    try:
        found = list_classes(folder)
    except DatasetError:
        return None
    if not set(found) <= set(class_names):
        return None
    return index_folder(folder, class_names)


def even_sample(paths: list[str], limit: int) -> list[str]:
    """At most `limit` of `paths`, evenly spaced over the (sorted) list: deterministic, and a
    class-folder tree listed class by class keeps every class in proportion."""
    if len(paths) <= limit:
        return list(paths)
    picks = np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))
    return [paths[i] for i in picks]


def plan_int8(
    calibration: str | os.PathLike,
    eval_data: str | os.PathLike | None,
    class_names: list[str],
    limit: int = CALIBRATION_LIMIT,
    threads: int = 1,
) -> Int8Request:
    """Check the folders and choose the calibration images (before the slow export). The
    evaluation set is `eval_data` (which must be labelled), else the calibration folder when it
    is labelled, else none."""
    calibration = Path(calibration)
    if not calibration.is_dir():
        raise QuantizationError(f"calibration folder not found: {calibration}")
    if limit < 1:
        raise QuantizationError(f"--calibration-size must be at least 1 (got {limit})")
    labelled = labelled_index(calibration, class_names)
    paths = (
        [labelled.paths[i] for i in range(len(labelled.paths))]
        if labelled
        else collect_inputs([str(calibration)]).paths
    )
    if not paths:
        raise QuantizationError(f"no images in the calibration folder {calibration}")
    evaluation = labelled
    if eval_data is not None:
        evaluation = labelled_index(Path(eval_data), class_names)
        if evaluation is None or len(evaluation.paths) == 0:
            raise QuantizationError(
                f"--eval-data {eval_data}: expected a labelled folder <class>/<images> with the model's classes "
                f"({', '.join(class_names)})"
            )
    return Int8Request(calibration, even_sample(sorted(paths), limit), evaluation, threads)


def load_calibration(request: Int8Request, preprocessing: Preprocessing) -> list[np.ndarray]:
    """The calibration images as (1, 3, H, W) inputs; unreadable files are skipped (counted in
    the report), since a range estimate does not need every image."""
    inputs = []
    for path in request.calibration_paths:
        try:
            inputs.append(preprocessing.load(path)[None])
        except ImageLoadError:
            continue
    request.report["calibration"] = {
        "folder": str(request.calibration),
        "images": len(inputs),
        "unreadable": len(request.calibration_paths) - len(inputs),
    }
    if not inputs:
        raise QuantizationError(f"none of the {len(request.calibration_paths)} calibration images could be read")
    return inputs


def quantize_ir(xml_path: Path, inputs: list[np.ndarray]) -> Any:
    """The INT8 OpenVINO model: NNCF's default post-training recipe (min-max ranges from the
    calibration inputs, fast bias correction) with its transformer settings, which keep the
    softmax and layer-norm arithmetic in floating point as ViT-based CLIPs need."""
    ov = require("openvino", "INT8 quantisation")
    nncf = require("nncf", "INT8 quantisation")
    model = ov.Core().read_model(str(xml_path))
    dataset = nncf.Dataset(inputs)
    return nncf.quantize(model, dataset, subset_size=len(inputs), model_type=nncf.ModelType.TRANSFORMER)


def batches(index: ImageIndex, preprocessing: Preprocessing) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels, labels) batches of the readable images of `index`, in index order."""
    pixels, labels = [], []
    for i in range(len(index.paths)):
        try:
            pixels.append(preprocessing.load(index.paths[i]))
        except ImageLoadError:
            continue
        labels.append(int(index.labels[i]))
        if len(pixels) == EVAL_BATCH:
            yield np.stack(pixels), np.asarray(labels)
            pixels, labels = [], []
    if pixels:
        yield np.stack(pixels), np.asarray(labels)


def scores(targets: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of the argmax predictions (scikit-learn, as `clipcls evaluate`)."""
    from sklearn.metrics import accuracy_score, f1_score

    preds = probabilities.argmax(1)
    labels = np.arange(probabilities.shape[1])
    return {
        "accuracy": float(accuracy_score(targets, preds)),
        "macro_f1": float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0)),
    }


def compare(fp32: OpenVinoSession, int8: OpenVinoSession, index: ImageIndex, prep: Preprocessing) -> dict[str, Any]:
    """fp32 vs INT8 on a labelled folder: accuracy and macro F1 per scorer, how often the two
    pick the same class, and the largest probability difference."""
    outputs: dict[str, dict[str, list[np.ndarray]]] = {"fp32": {}, "int8": {}}
    targets = []
    for pixels, labels in batches(index, prep):
        targets.append(labels)
        for precision, session in (("fp32", fp32), ("int8", int8)):
            for name, probs in session.run(pixels).items():
                outputs[precision].setdefault(name, []).append(probs)
    if not targets:
        raise QuantizationError(f"none of the images in {index.root} could be read")
    y = np.concatenate(targets)
    probs = {p: {name: np.concatenate(chunks) for name, chunks in out.items()} for p, out in outputs.items()}
    return {
        "folder": str(index.root),
        "images": int(len(y)),
        "unreadable": int(len(index.paths) - len(y)),
        "fp32": {name: scores(y, probs["fp32"][name]) for name in OUTPUT_NAMES},
        "int8": {name: scores(y, probs["int8"][name]) for name in OUTPUT_NAMES},
        "top1_agreement": {
            name: float((probs["fp32"][name].argmax(1) == probs["int8"][name].argmax(1)).mean())
            for name in OUTPUT_NAMES
        },
        "max_probability_difference": float(
            max(np.abs(probs["fp32"][name] - probs["int8"][name]).max() for name in OUTPUT_NAMES)
        ),
    }


def quantize_export(directory: Path, request: Int8Request) -> None:
    """Replace the fp32 model.xml/.bin in an export directory (being written) by the INT8 model,
    measure both on the evaluation folder, and record it all in clipcls_graph.json."""
    ov = require("openvino", "INT8 quantisation")
    nncf = require("nncf", "INT8 quantisation")
    prep = Preprocessing.from_json(read_json(directory / PREPROCESSING), directory / PREPROCESSING)
    quantized = quantize_ir(directory / IR_FILE, load_calibration(request, prep))
    int8_xml = directory / "model_int8.xml"
    ov.save_model(quantized, str(int8_xml), compress_to_fp16=False)
    if request.eval_data is not None:
        sessions = (OpenVinoSession(directory / IR_FILE, request.threads), OpenVinoSession(int8_xml, request.threads))
        request.report["evaluation"] = compare(*sessions, request.eval_data, prep)
    os.replace(int8_xml, directory / IR_FILE)
    os.replace(int8_xml.with_suffix(".bin"), (directory / IR_FILE).with_suffix(".bin"))
    meta = read_json(directory / GRAPH_META)
    meta.update(precision="int8", quantization={"tool": f"nncf {nncf.__version__}", **request.report})
    write_json(meta, directory / GRAPH_META)


def export_openvino_int8(model: TrainedModel, out: str | os.PathLike, request: Int8Request, overwrite: bool) -> float:
    """The OpenVINO export with INT8 weights and activations; returns the fp32 graph's measured
    difference with PyTorch (checked before quantising). `request.report` holds the figures."""
    require("nncf", "INT8 quantisation")  # before the slow export
    return export_openvino(model, out, overwrite=overwrite, finish=lambda tmp: quantize_export(tmp, request))


def format_report(report: dict[str, Any]) -> str:
    """The figures as printed by `clipcls export --int8`."""
    cal = report["calibration"]
    lines = [f"INT8: calibrated on {cal['images']} images of {cal['folder']} ({cal['unreadable']} unreadable)"]
    ev = report.get("evaluation")
    if ev is None:
        return "\n".join(lines + ["INT8: no labelled folder (--eval-data), so no accuracy comparison"])
    lines.append(f"fp32 vs INT8 on {ev['images']} images of {ev['folder']} ({ev['unreadable']} unreadable):")
    lines.append(f"  {'scorer':<9} {'acc fp32':>8} {'acc int8':>8} {'F1 fp32':>8} {'F1 int8':>8} {'agree':>6}")
    for name in OUTPUT_NAMES:
        f, i = ev["fp32"][name], ev["int8"][name]
        lines.append(
            f"  {name:<9} {f['accuracy']:8.4f} {i['accuracy']:8.4f} {f['macro_f1']:8.4f} {i['macro_f1']:8.4f}"
            f" {ev['top1_agreement'][name]:6.3f}"
        )
    lines.append(f"  max |p_fp32 - p_int8| = {ev['max_probability_difference']:.3g}")
    return "\n".join(lines)
