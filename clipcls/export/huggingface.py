"""A self-contained HuggingFace-format model directory (`clipcls export`).

An export holds everything prediction needs and nothing that needs this project's training code:

    config.json, model.safetensors   the CLIP weights (`CLIPModel.save_pretrained`)
    tokenizer files                  `tokenizer.save_pretrained`
    preprocessor_config.json         a CLIPImageProcessor that prepares images as training did:
                                     size, normalisation, and resize (squash: H x W, no crop;
                                     crop: shortest edge max(H, W), then the centre H x W)
    head.safetensors                 the classification head
    clipcls.json                     class names and order, descriptions, image size/mean/std,
                                     head kind, temperature, freeze_text, training config,
                                     WiSE-FT alpha, format version

Plain `transformers.CLIPModel.from_pretrained(dir)` loads it; `clipcls.load(dir)` returns a
Predictor. The directory is written under a temporary name next to OUT and renamed at the end,
so a failed export never leaves a half directory at OUT.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clipcls.errors import ClipclsError
from clipcls.inference.trained_model import EXPORT_FORMAT_VERSION, EXPORT_HEAD, EXPORT_META, TrainedModel
from clipcls.io import atomic_directory, atomic_write_text


class ExportError(ClipclsError, OSError):
    """An export that cannot be written or an invalid export option, naming the path or value."""


# --------------------------------------------------------------------------- writing
def export_meta(model: TrainedModel) -> dict[str, Any]:
    """The contents of clipcls.json: what prediction needs beyond the HuggingFace files."""
    classifier = model.classifier
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "class_names": list(model.class_names),
        "class_to_idx": {name: i for i, name in enumerate(model.class_names)},
        "descriptions": {name: list(model.descriptions[name]) for name in model.class_names},
        "image_size": [int(x) for x in model.image_size],
        "image_mean": [float(x) for x in model.image_mean],
        "image_std": [float(x) for x in model.image_std],
        "head": {"kind": model.config.get("head", "linear"), "file": EXPORT_HEAD},
        "temperature": classifier.temperature,
        "freeze_text": bool(classifier.freeze_text),
        "wise_alpha": model.wise_alpha,
        "source": str(model.source) if model.source is not None else None,
        "config": model.config,
        "calibration": model.calibration,  # temperatures + validation scores (clipcls.inference.calibration)
    }


def image_processor(model: TrainedModel):  # -> CLIPImageProcessor
    """A processor that prepares images like training's evaluation transform
    (`clipcls.data.transforms.resize_steps`), bilinear, with the training mean/std: `squash`
    resizes the whole image to H x W, no centre crop; `crop` resizes the shortest edge to
    max(H, W), then crops the centre H x W (transformers floors an odd margin where torchvision
    rounds it: at most one pixel of offset)."""
    from transformers import CLIPImageProcessor

    height, width = (int(x) for x in model.image_size)
    crop = model.config.get("resize", "squash") == "crop"
    return CLIPImageProcessor(
        size={"shortest_edge": max(height, width)} if crop else {"height": height, "width": width},
        crop_size={"height": height, "width": width},
        do_center_crop=crop,
        resample=2,  # 2 = PIL bilinear, as torchvision's Resize default
        image_mean=list(model.image_mean),
        image_std=list(model.image_std),
    )


def write_export(model: TrainedModel, directory: Path) -> None:
    """Write every file of an export into `directory` (which exists and is empty)."""
    from safetensors.torch import save_file

    classifier = model.classifier
    classifier.clip.save_pretrained(directory, safe_serialization=True)
    classifier.tokenizer.save_pretrained(directory)
    image_processor(model).save_pretrained(directory)
    head = {k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()}
    save_file(head, str(directory / EXPORT_HEAD), metadata={"format": "pt"})
    text = json.dumps(export_meta(model), ensure_ascii=False, indent=2)
    atomic_write_text(text + "\n", directory / EXPORT_META)


def export_model(model: TrainedModel, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the export to a temporary directory beside `out`, then swap it in (see
    `clipcls.io.atomic_directory`): `out` holds a complete export or what it held before."""
    out = Path(out)
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_export(model, tmp)
    except FileExistsError as err:
        hint = "; pass --overwrite to replace it" if out.is_dir() else ""
        raise ExportError(f"{out} {err.strerror}{hint}") from None
    return out
