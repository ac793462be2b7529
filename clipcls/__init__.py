"""clipcls: fine-tune CLIP for image classification with a description per class."""

from __future__ import annotations

__version__ = "0.1.0"


def load(path, device=None, scorer: str = "head"):  # -> clipcls.inference.predictor.Predictor
    """A predictor (`.predict(images)`) from an export directory (see `clipcls export`), a
    checkpoint or a run directory. Imports neither Lightning nor torchmetrics."""
    from clipcls.inference.predictor import load_predictor

    return load_predictor(path, device=device, scorer=scorer)
