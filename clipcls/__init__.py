"""clipcls: fine-tune CLIP for image classification with a description per class."""
from __future__ import annotations

__version__ = "0.1.0"


def load(path):  # -> clipcls.export.Predictor
    """Load an exported model directory (see `clipcls export`) as a predictor."""
    from clipcls.export import load_predictor

    return load_predictor(path)
