"""Issue 18, item 1: the `light` augmentation is sized to the input. At 64 px its shift and rotation
stay within the stated ranges, its border is reflected (never black), its photometric jitter keeps
a colour's hue, and a draw seed fixes its output."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from clipcls.data.transforms import (
    LIGHT_DEGREES,
    LIGHT_SCALE,
    LIGHT_TRANSLATE,
    SizedAffine,
    augmentation_steps,
)

SIDE = 64


def light(image: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return v2.Compose(augmentation_steps("light"))(tv_tensors.Image(image))


def test_light_draws_stay_within_the_stated_fractions_at_64_px():
    affine = SizedAffine()
    torch.manual_seed(0)
    draws = [affine.params(SIDE, SIDE) for _ in range(2000)]
    angles = np.array([a for a, _, _ in draws])
    shifts = np.array([s for _, s, _ in draws])
    zooms = np.array([z for _, _, z in draws])
    assert np.abs(angles).max() <= LIGHT_DEGREES and np.abs(angles).max() > 0.9 * LIGHT_DEGREES
    assert np.abs(shifts).max() <= LIGHT_TRANSLATE * SIDE  # 3.2 px at 64 px
    assert np.abs(shifts).max() > 0.9 * LIGHT_TRANSLATE * SIDE
    assert LIGHT_SCALE[0] <= zooms.min() and zooms.max() <= LIGHT_SCALE[1]
    assert LIGHT_TRANSLATE <= 0.1 and LIGHT_DEGREES <= 15  # "a few %" and "small"


def test_a_central_dot_moves_at_most_the_stated_shift_through_the_whole_pipeline():
    """End to end (flips, quarter-turns, affine, jitter): the centre is fixed by every symmetry,
    rotation and zoom about it, so only the shift may move the dot."""
    image = torch.zeros(3, SIDE, SIDE, dtype=torch.uint8)
    image[:, 30:34, 30:34] = 255
    ys, xs = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    worst = 0.0
    for seed in range(300):
        weight = light(image, seed)[0].float()
        cy, cx = (weight * ys).sum() / weight.sum(), (weight * xs).sum() / weight.sum()
        worst = max(worst, float(torch.hypot(cy - 31.5, cx - 31.5)))
    assert worst <= LIGHT_TRANSLATE * SIDE * 2**0.5 + 0.5
    assert worst > 1.0  # it does move


def test_a_uniform_grey_image_gets_no_black_fill():
    grey = torch.full((3, SIDE, SIDE), 128, dtype=torch.uint8)
    for seed in range(200):
        out = light(grey, seed)
        assert int(out.min()) >= 100, f"seed {seed}: a border filled with {int(out.min())}"
    # also at another size and aspect: the padding is sized to the image
    wide = torch.full((3, 24, 40), 90, dtype=torch.uint8)
    torch.manual_seed(1)
    assert int(SizedAffine()(wide).min()) >= 80


def hue(rgb: torch.Tensor) -> float:
    r, g, b = (float(c) / 255 for c in rgb)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def test_the_hue_of_a_coloured_patch_is_kept():
    image = torch.full((3, SIDE, SIDE), 120, dtype=torch.uint8)
    colour = torch.tensor([170, 90, 50], dtype=torch.uint8)  # a rust-brown stain
    image[:, 16:48, 16:48] = colour[:, None, None]
    before = hue(colour)
    changed = 0
    for seed in range(100):
        out = light(image, seed)
        centre = out[:, 30:34, 30:34].float().mean(dim=(1, 2))
        assert abs(hue(centre) - before) < 3.0, f"seed {seed}: hue {hue(centre):.1f} from {before:.1f}"
        changed += bool((centre - colour.float()).abs().max() > 2)
    assert changed > 50  # brightness and contrast do change the pixels


def test_the_same_draw_seed_gives_the_same_output():
    image = torch.randint(0, 256, (3, SIDE, SIDE), dtype=torch.uint8)
    assert torch.equal(light(image, 7), light(image, 7))
    assert not torch.equal(light(image, 7), light(image, 8))


@pytest.mark.parametrize("augment", ["light", "trivialaugment", "randaugment", "flip", "none"])
def test_every_choice_keeps_shape_and_dtype(augment):
    image = tv_tensors.Image(torch.randint(0, 256, (3, 20, 28), dtype=torch.uint8))
    torch.manual_seed(0)
    out = v2.Compose(augmentation_steps(augment) or [v2.Identity()])(image)
    assert out.dtype == torch.uint8 and tuple(out.shape[-2:]) in {(20, 28), (28, 20)}
