"""Predict with an ONNX or OpenVINO export (`clipcls export --format onnx|openvino`) and no torch.

An inspection PC next to a camera often has no PyTorch; this path needs numpy, Pillow and the
runtime (onnxruntime or openvino) only. The export's graph maps normalised pixels to the class
probabilities of every scorer (head, text, ensemble) with the description embeddings baked in,
and `preprocessing.json` beside it says how to make those pixels. This module reproduces that
preprocessing in numpy; nothing here imports torch (a test checks `sys.modules`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from clipcls.data.images import load_image, to_rgb
from clipcls.errors import ClipclsError
from clipcls.inference.calibration import Calibration
from clipcls.inference.decisions import build_rule, verdicts_of
from clipcls.optional import require

GRAPH_META = "clipcls_graph.json"  # marks an ONNX/OpenVINO export directory
PREPROCESSING = "preprocessing.json"
GRAPH_FORMAT_VERSION = 1
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("head", "text", "ensemble")  # = clipcls.inference.scoring.SCORERS (a test checks)
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}


class GraphExportError(ClipclsError, ValueError):
    """An ONNX/OpenVINO export that cannot be read or used, naming the file or option."""


class GraphLoadError(GraphExportError):
    """A graph file the runtime cannot load (truncated, corrupt, not a graph): a model that
    cannot load, exit status 2, with the runtime's first line of explanation."""

    def __init__(self, path: Path, err: Exception) -> None:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        super().__init__(f"cannot load {path}: {reason[:300]} (a truncated or corrupt file? export it again)")


def is_graph_export(path: str | os.PathLike) -> bool:
    """True for a directory written by `clipcls export --format onnx|openvino`."""
    return (Path(path) / GRAPH_META).is_file()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a GraphExportError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GraphExportError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise GraphExportError(f"{path}: expected a JSON object")
    return data


RESIZE_MODES = ("squash", "crop")  # = clipcls.data.transforms.RESIZES (a test checks)


@dataclass(frozen=True)
class Preprocessing:
    """How the export's input is made, as training's evaluation transform makes it
    (`clipcls.data.transforms.resize_steps`): `squash` resizes the whole upright RGB image to
    H x W (aspect not kept, no crop: a defect may sit anywhere); `crop` resizes its shortest side
    to max(H, W) and takes the centre H x W. Bilinear and antialiased; then scale to [0, 1],
    normalise by mean/std, channels first."""

    size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"  # training's `resize`: squash or crop

    def to_json(self) -> dict[str, Any]:
        """The contents of preprocessing.json: enough to rebuild the input in any language."""
        crop = self.resize == "crop"
        return {
            "height": self.size[0],
            "width": self.size[1],
            "mean": list(self.mean),
            "std": list(self.std),
            "mode": self.resize,  # clipcls's name: squash or crop
            # squash: the whole image to height x width, aspect ratio not kept; crop: the shortest
            # side to `shortest_edge` (the longer one int(shortest_edge * long / short)), then the
            # centre height x width (offsets round((resized - crop) / 2))
            "resize": "shortest_edge" if crop else "stretch",
            "shortest_edge": max(self.size) if crop else None,
            "interpolation": "bilinear",
            "antialias": True,
            "crop": {"height": self.size[0], "width": self.size[1], "position": "center"} if crop else None,
            "color": "RGB",  # EXIF-rotated upright, alpha flattened on white
            "scale": 1 / 255,  # uint8 -> [0, 1] before (x - mean) / std
            "layout": "NCHW",
            "dtype": "float32",
            "input": INPUT_NAME,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path) -> Preprocessing:
        """Read preprocessing.json back; a missing key is an error naming it and the file."""
        mode = data.get("mode", "squash")  # exports before the key existed were all squashed
        if mode not in RESIZE_MODES:
            raise GraphExportError(f"{source}: unknown resize mode {mode!r} (expected {' or '.join(RESIZE_MODES)})")
        try:
            size = (int(data["height"]), int(data["width"]))
            return cls(size, tuple(map(float, data["mean"])), tuple(map(float, data["std"])), mode)
        except (KeyError, TypeError, ValueError) as err:
            raise GraphExportError(f"{source}: bad or missing preprocessing key {err}") from err

    @property
    def draft_size(self) -> tuple[int, int]:
        """(W, H): the reduced-size JPEG decode `load_image` may use, as the torch path does."""
        return self.size[1], self.size[0]

    def __call__(self, image: Image.Image) -> np.ndarray:
        """An RGB PIL image as a (3, H, W) float32 array."""
        if self.resize == "crop":
            resized = center_crop(shortest_edge_resize(image, max(self.size)), self.size)
        else:
            resized = image.resize(self.draft_size, Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) * np.float32(1 / 255)
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """A file as model input; an unreadable one raises ImageLoadError naming it."""
        return self(load_image(path, draft_size=self.draft_size))


def shortest_edge_resize(image: Image.Image, edge: int) -> Image.Image:
    """The shortest side resized to `edge`, the other in proportion (truncated), bilinear and
    antialiased: torchvision's `Resize(edge)`."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = edge, int(edge * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(size, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The centre (H, W) of an image at least that large, offsets rounded as torchvision's
    `CenterCrop` rounds them."""
    height, width = size
    top = int(round((image.height - height) / 2.0))
    left = int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def compute_threads(workers: int = 0) -> int:
    """Threads for the runtime: OMP_NUM_THREADS when set, else the CPUs the loader workers leave
    free (oversubscribed cores slow every operation, as in `clipcls.data.loaders`)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, cpus - workers)


class OnnxRuntimeSession:
    """The graph run by onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = require("onnxruntime", "running an ONNX export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime's load errors share no base class
            raise GraphLoadError(path, err) from err

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        return dict(zip(OUTPUT_NAMES, values))


class OpenVinoSession:
    """The graph compiled by OpenVINO for the CPU, in fp32 (OpenVINO would otherwise pick bf16 on
    CPUs that have it, and the probabilities would no longer match PyTorch's)."""

    def __init__(self, path: Path, threads: int) -> None:
        ov = require("openvino", "running an OpenVINO export")
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        try:
            self.model = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as err:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            raise GraphLoadError(path, err) from err
        self.request = self.model.create_infer_request()

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({INPUT_NAME: pixels})
        return {name: np.array(results[self.model.output(name)]) for name in OUTPUT_NAMES}


@dataclass
class GraphPrediction:
    """Scores for a list of images, rows in input order (like `Predictor.predict`'s Prediction)."""

    class_names: list[str]
    probabilities: np.ndarray  # (N, C) of the chosen scorer
    labels: list[str]
    scorer: str = "head"
    verdicts: list[str] | None = None  # the class, or "uncertain", after the decision rule
    rules: list[str] | None = None  # which rule decided: argmax, max-error, good-class


class OnnxPredictor:
    """An ONNX or OpenVINO export ready to score images, with the methods `stream_predictions`
    and the server call on the torch Predictor: `preprocess`, `logits` (here: the graph's
    outputs, already probabilities), `probabilities` and `predict`. The calibration stored in
    clipcls_graph.json is applied here in numpy, by the same function as the torch Predictor."""

    def __init__(
        self,
        directory: str | os.PathLike,
        scorer: str | None = None,
        threads: int | None = None,
        calibrated: bool = True,
        max_error: float | None = None,
        good_class: str | None = None,
        max_escape: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.meta = read_graph_meta(self.directory)
        self.preprocessing = Preprocessing.from_json(
            read_json(self.directory / PREPROCESSING), self.directory / PREPROCESSING
        )
        self.class_names: list[str] = list(self.meta["class_names"])
        self.scorer = self.resolve_scorer(scorer or self.meta.get("default_scorer", "head"))  # None: the run's
        stored = self.meta.get("calibration")
        self.calibration = Calibration(stored if calibrated else None)
        self.rule = build_rule(Calibration(stored), self.scorer, self.class_names, max_error, good_class, max_escape)
        self.runtime = self.meta["runtime"]
        model_file = self.directory / self.meta["model_file"]
        if not model_file.is_file():
            raise GraphExportError(f"{model_file} is missing (named in {self.directory / GRAPH_META})")
        session = OnnxRuntimeSession if self.runtime == "onnxruntime" else OpenVinoSession
        self.session = session(model_file, threads or compute_threads())

    def resolve_scorer(self, scorer: str | None = None) -> str:
        """`scorer`, or the predictor's own, checked against the graph's outputs."""
        scorer = scorer or self.scorer
        if scorer not in OUTPUT_NAMES:
            raise GraphExportError(f"unknown scorer {scorer!r}: expected one of {', '.join(OUTPUT_NAMES)}")
        return scorer

    def preprocess(self, image: str | os.PathLike | Image.Image) -> np.ndarray:
        """One image (path or PIL image) as a (3, H, W) input; a bad file raises ImageLoadError."""
        if isinstance(image, Image.Image):
            return self.preprocessing(to_rgb(ImageOps.exif_transpose(image)))
        return self.preprocessing.load(image)

    def logits(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for a (N, 3, H, W) batch: probabilities of every scorer."""
        return self.session.run(np.ascontiguousarray(pixels, dtype=np.float32))

    def probabilities(self, outputs: dict[str, np.ndarray], scorer: str | None = None) -> np.ndarray:
        """The chosen scorer's (N, C) calibrated probabilities from `logits`' outputs."""
        scorer = self.resolve_scorer(scorer)
        return self.calibration.apply(outputs[scorer], scorer)

    def decide(self, probs: np.ndarray) -> tuple[list[str], list[str]]:
        """(verdict, rule) per row of this predictor's scorer's probabilities."""
        return verdicts_of(self.rule, probs, self.class_names)

    def predict(
        self, images: Sequence[str | os.PathLike | Image.Image], batch_size: int = 32, scorer: str | None = None
    ) -> GraphPrediction:
        """Score images (paths or PIL images) in batches; an unreadable file raises ImageLoadError."""
        used = self.resolve_scorer(scorer)
        chunks = [np.zeros((0, len(self.class_names)), np.float32)]
        for start in range(0, len(images), batch_size):
            pixels = np.stack([self.preprocess(img) for img in images[start : start + batch_size]])
            chunks.append(self.probabilities(self.logits(pixels), used))
        probs = np.concatenate(chunks)
        verdicts, rules = self.decide(probs) if used == self.scorer else verdicts_of(None, probs, self.class_names)
        labels = [self.class_names[i] for i in probs.argmax(1)]
        return GraphPrediction(self.class_names, probs, labels, used, verdicts, rules)


def read_graph_meta(directory: Path) -> dict[str, Any]:
    """clipcls_graph.json, checked for a format version and runtime this code can use."""
    path = directory / GRAPH_META
    meta = read_json(path)
    if meta.get("format_version") != GRAPH_FORMAT_VERSION:
        raise GraphExportError(
            f"{path}: unsupported export format version {meta.get('format_version')!r} "
            f"(this clipcls reads version {GRAPH_FORMAT_VERSION})"
        )
    if meta.get("runtime") not in RUNTIMES.values():
        raise GraphExportError(f"{path}: unknown runtime {meta.get('runtime')!r}")
    for key in ("class_names", "model_file"):
        if key not in meta:
            raise GraphExportError(f"{path}: missing key {key!r}")
    check_model_file(directory, meta["model_file"], path)
    return meta


def check_model_file(directory: Path, name: Any, source: Path) -> None:
    """`model_file` must name a file inside the export directory: an absolute path, `..` or a
    link out of it (another model, /etc/passwd) is refused, naming the key and the file."""
    if not isinstance(name, str) or not name:
        raise GraphExportError(f"{source}: model_file must be a file name, got {name!r}")
    root = directory.resolve()
    target = (directory / name).resolve()
    if root not in target.parents:
        raise GraphExportError(f"{source}: model_file {name!r} is outside the export directory {directory}")
