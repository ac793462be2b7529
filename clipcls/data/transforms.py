"""Image transforms chosen by name and size, so a config round-trips through YAML."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "flip", "trivialaugment", "randaugment")
RESIZES = ("squash", "crop")


class RandomQuarterTurn(torch.nn.Module):
    """Rotate a square image by a random multiple of 90 degrees (exact, no interpolation).

    With the two flips this draws from all 8 symmetries of the square: surface defects have no
    up or down. Non-square images are left as they are, since a turn would change their shape.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != image.shape[-2]:
            return image
        turns = int(torch.randint(0, 4, ()))
        return image if turns == 0 else tv_tensors.wrap(torch.rot90(image, turns, (-2, -1)), like=image)


def resize_steps(size: tuple[int, int], resize: str = "squash") -> list[torch.nn.Module]:
    """`squash`: the whole image resized to `size` (H, W), aspect ratio not kept, so a defect at
    the edge stays in. `crop`: the shortest side resized, then a centre crop of `size`, as CLIP was
    pretrained (its image processor's resize + center_crop): no distortion, the margins are lost."""
    if resize == "squash":
        return [v2.Resize(size, antialias=True)]
    if resize == "crop":
        return [v2.Resize(max(size), antialias=True), v2.CenterCrop(size)]
    raise ValueError(f"unknown resize {resize!r}: expected one of {RESIZES}")


def build_transform(
    size: tuple[int, int], mean: list[float], std: list[float], augment: str = "none", resize: str = "squash"
) -> v2.Compose:
    """Resize to `size` (H, W) as `resize` says, optionally augment, then scale to float and normalise.

    No random crop: a defect can sit anywhere, and cropping it away would teach the wrong label.
    Augmentation runs on uint8 tensors, before the float cast.
    """
    steps: list = [v2.ToImage(), *resize_steps(size, resize), *augmentation_steps(augment)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def augmentation_steps(augment: str) -> list[torch.nn.Module]:
    """The random steps of `augment`, applied to resized uint8 images: shared by the CPU transform
    and the on-device decoder (`clipcls.data.device_decode`), so both draw the same augmentation."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}: expected one of {AUGMENTATIONS}")
    steps: list[torch.nn.Module] = []
    if augment != "none":
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomQuarterTurn()]
    if augment == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    elif augment == "randaugment":
        steps.append(v2.RandAugment())
    return steps
