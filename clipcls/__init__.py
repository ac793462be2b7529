"""clipcls: fine-tune CLIP for image classification with a description per class."""
from __future__ import annotations

__version__ = "0.1.0"


def load(path):  # -> clipcls.export.Predictor
    """A predictor (`.predict(images)`) from an export directory (see `clipcls export`), a
    checkpoint or a run directory."""
    from clipcls.export import load_predictor

    return load_predictor(path)
