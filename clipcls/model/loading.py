"""Load a CLIP checkpoint (Hub name, local directory, or the built-in tiny model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clipcls.model.tiny import TINY_NAME, tiny_clip_path


@dataclass
class ClipParts:
    """A CLIP model with the tokenizer and image normalisation that belong to it."""

    model: Any  # transformers.CLIPModel
    tokenizer: Any
    image_mean: list[float]
    image_std: list[float]
    image_size: int  # the checkpoint's native input side


def resolve_model_path(name_or_path: str) -> str:
    """Map the built-in name "tiny" to its (built-on-demand) directory; pass others through."""
    return str(tiny_clip_path()) if name_or_path == TINY_NAME else name_or_path


def load_clip(name_or_path: str) -> ClipParts:
    """Load CLIPModel, tokenizer and image-processor normalisation from one source."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar clutters every command
    source = resolve_model_path(name_or_path)
    model = CLIPModel.from_pretrained(source, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(source)
    processor = AutoImageProcessor.from_pretrained(source)
    return ClipParts(
        model=model,
        tokenizer=tokenizer,
        image_mean=[float(x) for x in processor.image_mean],
        image_std=[float(x) for x in processor.image_std],
        image_size=int(model.config.vision_config.image_size),
    )
