"""The Predictor: a trained model with its evaluation preprocessing, scoring images in memory
(`clipcls.load(dir).predict(images)`); `clipcls predict` streams folders through it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from clipcls.data.images import load_image, to_rgb
from clipcls.data.transforms import build_transform
from clipcls.errors import ClipclsError
from clipcls.inference.calibration import Calibration
from clipcls.inference.decisions import DecisionRule, build_rule, verdicts_of
from clipcls.inference.scoring import SCORERS, default_scorer, pick_device, scorer_probabilities
from clipcls.inference.trained_model import TrainedModel, load_trained


class PredictError(ClipclsError, ValueError):
    """Bad predict input (paths, classes, options), naming what is wrong."""


@dataclass
class Prediction:
    """Scores for a list of images, rows in input order."""

    class_names: list[str]
    probabilities: np.ndarray  # (N, C) of the chosen scorer, calibrated unless asked otherwise
    labels: list[str]  # the most probable class of each image
    head_logits: np.ndarray  # (N, trained classes) from the linear/MLP head
    text_logits: np.ndarray  # (N, C) cosine similarity with the descriptions, times the logit scale
    scorer: str = "head"
    verdicts: list[str] | None = None  # the class, or "uncertain", after the decision rule
    rules: list[str] | None = None  # which rule decided each verdict: argmax, max-error, good-class


def _upright_rgb(image: Image.Image) -> Image.Image:
    """An in-memory image converted the way `load_image` converts a file (EXIF rotation, alpha
    flattened on white, high bit depths scaled), so both routes see the same pixels."""
    return to_rgb(ImageOps.exif_transpose(image))


class Predictor:
    """A trained model with its evaluation preprocessing, ready to score images.

    `extra_descriptions` adds classes known only by their descriptions (open vocabulary): they
    are scored through the description similarity, so such a predictor always uses the "text"
    scorer — the head knows only the trained classes.

    Probabilities are calibrated by the temperatures stored with the model (`calibrated=False`
    for the raw ones); `max_error`, `good_class` and `max_escape` set the decision rule of
    `clipcls.inference.decisions` (verdicts in `Prediction.verdicts`).
    """

    def __init__(
        self,
        model: TrainedModel,
        device: str | torch.device | None = None,
        scorer: str | None = None,
        extra_descriptions: dict[str, list[str]] | None = None,
        calibrated: bool = True,
        max_error: float | None = None,
        good_class: str | None = None,
        max_escape: float | None = None,
    ) -> None:
        self.model = model
        self.device = pick_device(device)
        self.classifier = model.classifier.to(self.device).eval()
        size = tuple(model.image_size)
        # the validation transform of training, with the same reduced-size JPEG decode (W, H)
        resize = model.config.get("resize", "squash")
        self.transform = build_transform(size, model.image_mean, model.image_std, "none", resize)
        self.draft_size = (size[1], size[0])
        extra = dict(extra_descriptions or {})
        clash = sorted(set(extra) & set(model.class_names))
        if clash:
            raise PredictError(f"extra classes already known to the model: {clash}")
        self.extra_names = list(extra)
        self.extra_embeddings = self.classifier.embed_descriptions(extra) if extra else None
        # validated; "text" whenever there are extra classes; None: the run's own (default_scorer)
        self.scorer = self.resolve_scorer(scorer or default_scorer(model.config))
        self.calibration = Calibration(model.calibration if calibrated else None)
        self.rule: DecisionRule | None = build_rule(
            Calibration(model.calibration), self.scorer, self.class_names, max_error, good_class, max_escape
        )

    @property
    def class_names(self) -> list[str]:
        """Trained classes in training order, then any extra classes."""
        return list(self.model.class_names) + self.extra_names

    def preprocess(self, image: str | os.PathLike | Image.Image) -> torch.Tensor:
        """One image (path or PIL image) as the model's input tensor; a bad file raises
        ImageLoadError naming it."""
        if isinstance(image, Image.Image):
            return self.transform(_upright_rgb(image))
        return self.transform(load_image(image, draft_size=self.draft_size))

    @torch.inference_mode()
    def logits(self, pixels: torch.Tensor) -> dict[str, np.ndarray]:
        """Head and description logits (float32 numpy) for a batch of preprocessed images."""
        out = self.classifier(pixels.to(self.device, non_blocking=True))
        text = out["text_logits"]
        if self.extra_embeddings is not None:
            extra = self.classifier.similarity_logits(out["embedding"], self.extra_embeddings)
            text = torch.cat([text, extra], dim=1)
        return {"head_logits": out["head_logits"].float().cpu().numpy(), "text_logits": text.float().cpu().numpy()}

    def resolve_scorer(self, scorer: str | None = None) -> str:
        """The scorer actually used: "text" whenever extra classes exist, else `scorer` or the default."""
        scorer = "text" if self.extra_embeddings is not None else (scorer or self.scorer)
        if scorer not in SCORERS:
            raise PredictError(f"unknown scorer {scorer!r}: expected one of {', '.join(SCORERS)}")
        return scorer

    def probabilities(self, logits: dict[str, np.ndarray], scorer: str | None = None) -> np.ndarray:
        """Class probabilities of one scorer: head, text, or the mean of the two."""
        scorer = self.resolve_scorer(scorer)
        raw = scorer_probabilities(logits, (scorer,), self.classifier.text_probability)[scorer]
        return self.calibration.apply(raw, scorer)

    def decide(self, probs: np.ndarray) -> tuple[list[str], list[str]]:
        """(verdict, rule) per row of this predictor's scorer's probabilities."""
        return verdicts_of(self.rule, probs, self.class_names)

    def predict(
        self, images: Sequence[str | os.PathLike | Image.Image], batch_size: int = 32, scorer: str | None = None
    ) -> Prediction:
        """Score images (paths or PIL images) in batches; an unreadable file raises
        ImageLoadError naming it (the `clipcls predict` command lists such files instead)."""
        chunks: dict[str, list[np.ndarray]] = {"head_logits": [], "text_logits": []}
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([self.preprocess(img) for img in images[start : start + batch_size]])
            for key, value in self.logits(pixels).items():
                chunks[key].append(value)
        widths = {"head_logits": len(self.model.class_names), "text_logits": len(self.class_names)}
        logits = {k: np.concatenate(v) if v else np.zeros((0, widths[k]), np.float32) for k, v in chunks.items()}
        used = self.resolve_scorer(scorer)
        probs = self.probabilities(logits, used)
        names = self.class_names
        verdicts, rules = self.decide(probs) if used == self.scorer else verdicts_of(None, probs, names)
        return Prediction(
            names,
            probs,
            [names[i] for i in probs.argmax(1)],
            logits["head_logits"],
            logits["text_logits"],
            used,
            verdicts,
            rules,
        )


def load_predictor(
    path: str | os.PathLike, device: str | torch.device | None = None, scorer: str | None = None, **options
) -> Predictor:
    """A Predictor for an export, a checkpoint or a run directory (`clipcls.load`); `options`
    are Predictor's calibrated, max_error, good_class and max_escape."""
    return Predictor(load_trained(path), device=device, scorer=scorer, **options)
