"""Image transforms chosen by name and size, so a config round-trips through YAML."""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

AUGMENTATIONS = ("none", "flip", "light", "trivialaugment", "randaugment")
# `light`'s ranges, as fractions of the image or small absolute angles, so they mean the same at
# 64 px as at 512: a defect stays in view and keeps its shape, colour and texture.
LIGHT_TRANSLATE = 0.05  # largest shift, a fraction of each side
LIGHT_DEGREES = 10.0  # largest rotation (on top of the exact quarter-turns)
LIGHT_SCALE = (0.9, 1.1)  # zoom range
LIGHT_BRIGHTNESS = 0.1  # brightness factor in 1 +- this: every channel scaled alike, hue kept
LIGHT_CONTRAST = 0.1  # contrast factor in 1 +- this: a grey blend, hue kept (no hue, solarise, posterise)
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


class SizedAffine(torch.nn.Module):
    """A small random rotation, shift and zoom whose shift is a fraction of the image's own side,
    with the border filled by reflection, never by black (a black wedge looks like a tear or a
    seam). The image is reflect-padded by just enough that the transformed view never reaches
    past the padding, transformed, then centre-cropped back to its size. Draws come from torch's
    global generator, so a sample's draw seed fixes them (as for every other step)."""

    def __init__(
        self,
        translate: float = LIGHT_TRANSLATE,
        degrees: float = LIGHT_DEGREES,
        scale: tuple[float, float] = LIGHT_SCALE,
    ) -> None:
        super().__init__()
        self.translate, self.degrees, self.scale = translate, degrees, scale

    def params(self, height: int, width: int) -> tuple[float, list[float], float]:
        """One draw: angle (degrees), shift (pixels: x, y) and zoom."""
        u = torch.rand(4).tolist()
        angle = (2 * u[0] - 1) * self.degrees
        shift = [(2 * u[1] - 1) * self.translate * width, (2 * u[2] - 1) * self.translate * height]
        zoom = self.scale[0] + u[3] * (self.scale[1] - self.scale[0])
        return angle, shift, zoom

    def padding(self, height: int, width: int) -> int:
        """Pixels of reflection around the image that cover every output pixel's source point at
        the largest rotation, shift and smallest zoom (half-diagonal reach of a corner)."""
        theta = math.radians(self.degrees)
        half = max(height, width) / 2
        reach = half * (math.cos(theta) + math.sin(theta)) / self.scale[0] + self.translate * max(height, width)
        return min(math.ceil(reach - half) + 1, min(height, width) - 1)  # reflection needs pad < side

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        angle, shift, zoom = self.params(height, width)
        pad = self.padding(height, width)
        # the v2 functionals keep the input's type (a plain tensor, or a tv_tensors.Image)
        out = F.pad(image, [pad, pad, pad, pad], padding_mode="reflect")
        out = F.affine(
            out, angle=angle, translate=shift, scale=zoom, shear=[0.0, 0.0], interpolation=v2.InterpolationMode.BILINEAR
        )
        return F.center_crop(out, [height, width])


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
    if augment == "light":  # sized to the input: see the LIGHT_* ranges
        steps += [SizedAffine(), v2.ColorJitter(brightness=LIGHT_BRIGHTNESS, contrast=LIGHT_CONTRAST)]
    elif augment == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    elif augment == "randaugment":
        steps.append(v2.RandAugment())
    return steps
