"""Image transforms chosen by name and size, so a config round-trips through YAML."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "flip", "trivialaugment", "randaugment")


def build_transform(
    size: tuple[int, int], mean: list[float], std: list[float], augment: str = "none"
) -> v2.Compose:
    """Resize to `size` (H, W), optionally augment, then scale to float and normalise.

    The whole image is kept (no random crop): a defect can sit anywhere, and cropping it away
    would teach the wrong label. Augmentation runs on uint8 tensors, before the float cast.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}: expected one of {AUGMENTATIONS}")
    steps: list = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if augment != "none":
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if augment == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    elif augment == "randaugment":
        steps.append(v2.RandAugment())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)
