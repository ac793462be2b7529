"""The export's parity check: real images through each side's own preprocessing.

Feeding the same random tensor to PyTorch and to the exported graph proves only that the graph
computes what the network computes; it never looks at how pixels are made. A `resize: crop`
model exported with a squash in `preprocessing.json` passed that check at 3.6e-07 and then
predicted 9 of 10 wide images differently from its checkpoint. So the check here decodes a
fixed set of probe images of several aspect ratios (wide, tall, odd sizes, sharp edges near the
borders, where squash and crop differ most) and compares

1. the inputs: training's evaluation transform (torchvision, `clipcls.data.transforms`) against
   the numpy preprocessing written to `preprocessing.json`, within `PIXEL_TOLERANCE` levels of
   255 (PIL's and torchvision's antialiased resizes round differently by a level or two);
2. the graph: PyTorch and the runtime on the same (torchvision) inputs, within the probability
   tolerance the caller gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from clipcls.data.transforms import build_transform
from clipcls.export.huggingface import ExportError
from clipcls.inference.onnx_predictor import OUTPUT_NAMES, Preprocessing
from clipcls.inference.trained_model import TrainedModel

PIXEL_TOLERANCE = 3.0  # max |numpy - torchvision| input difference, in levels of 255


def probe_images(size: tuple[int, int]) -> list[Image.Image]:
    """Deterministic RGB images around `size` (H, W): 4:1 wide, 1:4 tall, 3:2 with odd sides,
    and one a little smaller than the input. Each has a gradient, a coloured band at its left
    and right edges and a checker block, so a resize or crop that differs shows."""
    height, width = size
    shapes = [(height, 4 * width), (4 * height, width), (2 * height + 1, 3 * width + 1), (max(1, height - 3), width)]
    rng = np.random.default_rng(0)
    images = []
    for h, w in shapes:
        y, x = np.mgrid[0:h, 0:w]
        pixels = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], axis=-1)
        band = max(1, w // 8)
        pixels[:, :band] = (230, 30, 30)
        pixels[:, w - band :] = (30, 30, 230)
        cy, cx, cell = h // 2, w // 2, max(1, min(h, w) // 8)
        block = ((y // cell + x // cell) % 2 == 0) & (abs(y - cy) < 2 * cell) & (abs(x - cx) < 2 * cell)
        pixels[block] = rng.integers(0, 256, 3)
        images.append(Image.fromarray(pixels.astype(np.uint8), "RGB"))
    return images


def preprocessing_difference(model: TrainedModel, preprocessing: Preprocessing) -> tuple[float, torch.Tensor]:
    """(max |difference| in levels of 255 between training's evaluation transform and
    `preprocessing` on the probe images, the training transform's inputs)."""
    size = (int(model.image_size[0]), int(model.image_size[1]))
    transform = build_transform(size, model.image_mean, model.image_std, "none", model.config.get("resize", "squash"))
    images = probe_images(size)
    want = torch.stack([transform(image) for image in images])
    got = np.stack([preprocessing(image) for image in images])
    if got.shape != tuple(want.shape):
        return float("inf"), want
    std = np.asarray(model.image_std, np.float32).reshape(1, 3, 1, 1)
    return float((np.abs(got - want.numpy()) * std * 255).max()), want


def check_parity(
    model: TrainedModel,
    preprocessing: Preprocessing,
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    graph: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    where: str,
    tolerance: float,
) -> float:
    """Refuse (ExportError naming `where`) an export whose preprocessing or graph disagrees with
    PyTorch on the probe images; returns the graph's max probability difference."""
    levels, pixels = preprocessing_difference(model, preprocessing)
    if not levels <= PIXEL_TOLERANCE:
        raise ExportError(
            f"{where}: the export's preprocessing ({preprocessing.resize}) differs from training's "
            f"(resize: {model.config.get('resize', 'squash')}) by {levels:.1f} levels of 255 on real images "
            f"(> {PIXEL_TOLERANCE:g}); refusing an export that would predict differently"
        )
    with torch.no_grad():
        expected = [t.numpy() for t in graph(pixels)]
    got = run(np.ascontiguousarray(pixels.numpy()))
    diff = float(max(np.abs(got[name] - want).max() for name, want in zip(OUTPUT_NAMES, expected)))
    if not diff <= tolerance:
        raise ExportError(f"{where}: the graph differs from PyTorch by {diff:.2e} (> {tolerance:g}) on real images")
    return diff
