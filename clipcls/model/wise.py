"""WiSE-FT (Wortsman et al., CVPR 2022): interpolate a fine-tuned classifier's weights with the
weights training started from, `(1 - alpha) * initial + alpha * fine-tuned`."""

from __future__ import annotations

import logging
from typing import Any

import torch

from clipcls.errors import ClipclsError
from clipcls.model.classifier import ClipClassifier, build_classifier

log = logging.getLogger("clipcls.wise")


class WiseError(ClipclsError, ValueError):
    """An alpha out of range, or weights that cannot be interpolated, naming the value."""


def check_alpha(alpha: float) -> float:
    """WiSE-FT's alpha as a float in [0, 1] (0 = initial model, 1 = fine-tune)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise WiseError(f"--wise-alpha must be between 0 and 1, got {alpha:g}")
    return alpha


def initial_classifier(
    config: dict[str, Any], class_names: list[str], descriptions: dict[str, list[str]]
) -> ClipClassifier:
    """The classifier training started from: the config's base CLIP and a head built by the same
    constructor training uses.

    With head_init="zeroshot" the head is the zero-shot head (description embeddings times the
    logit scale), exactly. With head_init="random" it is the head drawn after seeding torch with
    the config's seed, as training does; that equals training's start only when nothing else drew
    random numbers in between (true for the current training run).
    """
    if config.get("head_init") == "random":
        log.warning(
            "WiSE-FT: this run's head was randomly initialised (head_init: random), so with alpha < 1 "
            "the head is mixed with random weights, not with a zero-shot head: read the text scorer, "
            "whose initial model is zero-shot CLIP, or use alpha 1"
        )
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(int(config.get("seed", 0)))
        try:
            classifier = build_classifier(config, class_names, descriptions)
        except OSError as err:  # the base model is gone or not downloadable
            raise WiseError(f"WiSE-FT needs the initial model {config.get('model_name')!r}: {err}") from err
    return classifier.eval()


def wise_interpolate(initial: ClipClassifier, tuned: ClipClassifier, alpha: float) -> ClipClassifier:
    """`initial`, its weights replaced by `(1 - alpha) * initial + alpha * tuned`.

    Every floating-point weight of the CLIP (both towers, projections, the logit scale) and of the
    head is interpolated; alpha = 0 gives `initial` and alpha = 1 the fine-tune, exactly
    (torch.lerp is exact at both ends).
    """
    alpha = check_alpha(alpha)
    end = tuned.state_dict()
    initial.to(next(iter(end.values())).device)
    start = initial.state_dict()
    if start.keys() != end.keys() or any(start[k].shape != end[k].shape for k in start):
        raise WiseError("the fine-tuned weights do not match their initial model: cannot interpolate")
    mixed = {k: torch.lerp(start[k], end[k], alpha) if end[k].is_floating_point() else end[k].clone() for k in end}
    initial.load_state_dict(mixed)
    initial.invalidate_text_cache()  # the text tower changed: description embeddings are stale
    return initial.eval()
