"""Drawing the demo set's images: one wallpaper defect per class, photographed (see demo.py).
The painting itself is the shared kit in paint.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from clipcls.data.paint import (
    Scene,
    bubble,
    clean,
    mould,
    photograph,
    random_wallpaper,
    scratch,
    seam_gap,
    stain,
    tear,
)

SIDES: tuple[int, ...] = (128, 160, 192, 224, 256)  # image heights and widths to draw from

_DEFECTS: dict[str, Callable[[np.ndarray, Scene, np.random.Generator], np.ndarray]] = {
    "clean": clean,
    "mould": mould,
    "tear": tear,
    "seam_gap": seam_gap,
    "stain": stain,
    "bubble": bubble,
    "scratch": scratch,
}


def render_image(class_name: str, class_index: int, seed: int, index: int) -> Image.Image:
    """Draw image `index` of `class_name`; the same arguments always give the same pixels."""
    # A seed sequence per image (not seed + offset) so no two (class, image) pairs can collide.
    rng = np.random.default_rng([seed, class_index, index])
    h = int(rng.choice(SIDES))
    w = h if rng.random() < 0.5 else int(rng.choice(SIDES))
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    scene = Scene(random_wallpaper(rng), yy, xx)
    img = _DEFECTS[class_name](scene.wallpaper.render(yy, xx), scene, rng)
    img = photograph(img, scene, rng)
    return Image.fromarray(np.round(img * 255).astype(np.uint8), mode="RGB")
