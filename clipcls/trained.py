"""Load a trained model from a checkpoint file or a run directory, with everything training
decided about it (class order above all), read back rather than recomputed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipcls.checkpoint import CheckpointError, load_checkpoint_file
from clipcls.model.classifier import ClipClassifier


@dataclass
class TrainedModel:
    """A ready-to-run classifier and the facts needed to feed it and read its outputs."""

    classifier: ClipClassifier
    class_names: list[str]
    descriptions: dict[str, list[str]]
    image_size: tuple[int, int]  # (H, W) the model was trained at
    image_mean: list[float]
    image_std: list[float]
    config: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def find_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given; for a run directory its best checkpoint, else its last.ckpt."""
    path = Path(path)
    if path.is_file():
        return path
    ckpt_dir = path / "checkpoints"
    best = sorted(ckpt_dir.glob("best-*.ckpt"))
    if best:
        return best[-1]
    if (ckpt_dir / "last.ckpt").is_file():
        return ckpt_dir / "last.ckpt"
    raise CheckpointError(f"no checkpoint found at {path} (expected a .ckpt file or a run directory)")


def load_trained(path: str | Path, map_location: str = "cpu") -> TrainedModel:
    """Rebuild the classifier from a checkpoint (weights-only load) and put it in eval mode."""
    from clipcls.module import ClipClassifierModule

    ckpt_path = find_checkpoint(path)
    ckpt = load_checkpoint_file(ckpt_path, map_location)
    try:
        hparams, meta = ckpt["hyper_parameters"], ckpt["clipcls"]
    except KeyError as err:
        raise CheckpointError(f"{ckpt_path} is not a clipcls checkpoint (missing {err})") from err
    module = ClipClassifierModule(hparams["config"], meta["class_names"], meta["descriptions"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return TrainedModel(
        classifier=module.model, class_names=list(meta["class_names"]), descriptions=dict(meta["descriptions"]),
        image_size=tuple(meta["image_size"]), image_mean=list(meta["image_mean"]), image_std=list(meta["image_std"]),
        config=dict(hparams["config"]), source=ckpt_path,
    )


def to_device(model: TrainedModel, device: str | torch.device) -> TrainedModel:
    model.classifier.to(device)
    return model
