"""The model behind the server, whatever its format: a PyTorch checkpoint / run directory / HF
export (scored by `Predictor`) or an ONNX / OpenVINO export (scored by `OnnxPredictor`, no torch).
The server sees only `Backend`: turn an image into a model input, score a list of inputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clipcls.inference.decisions import verdicts_of
from clipcls.inference.onnx_predictor import OnnxPredictor, compute_threads, is_graph_export


@dataclass
class Backend:
    """What the server needs from a model."""

    class_names: list[str]
    prepare: Callable[[Image.Image], Any]  # upright RGB image -> one model input
    score: Callable[[list[Any]], np.ndarray]  # model inputs -> (N, C) calibrated probabilities of the scorer
    draft_size: tuple[int, int]  # (W, H): reduced-size JPEG decode, as `clipcls predict` does
    kind: str  # pytorch, onnxruntime or openvino
    scorer: str
    decide: Callable[[np.ndarray], tuple[list[str], list[str]]] | None = None  # probs -> (verdicts, rules)

    def __post_init__(self) -> None:
        if self.decide is None:  # no decision rule: the top class, decided by argmax
            self.decide = lambda probs: verdicts_of(None, probs, self.class_names)


def graph_backend(path: str | os.PathLike, scorer: str, threads: int, **options: Any) -> Backend:
    """An ONNX / OpenVINO export run by its runtime; `options` are the decision options."""
    predictor = OnnxPredictor(path, scorer, threads=threads, **options)
    return Backend(
        class_names=predictor.class_names,
        prepare=predictor.preprocess,
        score=lambda items: predictor.probabilities(predictor.logits(np.stack(items))),
        draft_size=predictor.preprocessing.draft_size,
        kind=predictor.runtime,
        scorer=predictor.scorer,
        decide=predictor.decide,
    )


def torch_backend(path: str | os.PathLike, scorer: str, device: str, threads: int, **options: Any) -> Backend:
    """A checkpoint, run directory or HF export run by PyTorch; `options` are the decision options."""
    import torch

    from clipcls.inference.predictor import Predictor
    from clipcls.inference.trained_model import load_trained

    torch.set_num_threads(threads)
    predictor = Predictor(load_trained(path), device=device, scorer=scorer, **options)
    height, width = predictor.model.image_size
    return Backend(
        class_names=predictor.class_names,
        prepare=predictor.preprocess,
        score=lambda items: predictor.probabilities(predictor.logits(torch.stack(items))),
        draft_size=(int(width), int(height)),
        kind="pytorch",
        scorer=predictor.scorer,
        decide=predictor.decide,
    )


def load_backend(
    path: str | os.PathLike, scorer: str = "head", device: str = "auto", threads: int | None = None, **options: Any
) -> Backend:
    """The backend for any model `clipcls predict` accepts; `options` (calibrated, max_error,
    good_class, max_escape) as for `clipcls.inference.predictor.Predictor`."""
    threads = threads or compute_threads()
    if is_graph_export(path):
        return graph_backend(path, scorer, threads, **options)
    return torch_backend(path, scorer, device, threads, **options)
