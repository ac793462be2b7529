"""clipcls: fine-tune CLIP for image classification with a description per class."""

from __future__ import annotations

__version__ = "0.1.0"


def load(
    path,
    device=None,
    scorer: str | None = None,
    calibrated: bool = True,
    max_error: float | None = None,
    good_class: str | None = None,
    max_escape: float | None = None,
):  # -> clipcls.inference.predictor.Predictor
    """A predictor (`.predict(images)`) from an export directory (see `clipcls export`), a
    checkpoint or a run directory. Imports neither Lightning nor torchmetrics.

    Probabilities are calibrated by the temperatures fitted on validation (`calibrated=False`:
    raw). `max_error=0.02` answers "uncertain" where the error on decided images could pass 2%;
    `good_class="clean", max_escape=0.005` passes an image as clean only when at most 0.5% of
    defects would; the verdicts are in `.predict(...).verdicts` (see clipcls.inference.decisions)."""
    from clipcls.inference.predictor import load_predictor

    options = {"calibrated": calibrated, "max_error": max_error, "good_class": good_class, "max_escape": max_escape}
    return load_predictor(path, device=device, scorer=scorer, **options)
