"""The task's new marks: concepts `mini` never saw in pretraining, on any material.

Each is a composition of marks pretraining did show elsewhere (a bubble with a hole punched in
its top, mould growing along a seam, a stain ringing a tear) or a faint version of one (a stain
at a quarter of its strength, a hairline thinner than a pixel). Pretraining's scenes carry one
mark of the kinds in vocab.MARK_NOUNS and are painted with render.MARK_PAINTERS only, so these
painters are reachable from the downstream task alone (task.py passes `TASK_PAINTERS`).

A novel mark is a `Mark` whose kind names one of `NOVEL_PAINTERS`; its attributes steer the
parts (size, orientation, position) as they do for the pretraining marks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from clipcls.data import paint as kit
from clipcls.world.render import MARK_PAINTERS, heading_of, place
from clipcls.world.scene import Mark

SUPERSAMPLE = 4  # the hairline is drawn on a 4x finer grid and averaged down: a sub-pixel line


def nail_pop(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    """A nail pop: one small dome with a dark hole at its top, where the nail head broke through."""
    centre = place(rng, mark.position, int(scene.side))
    img = kit.bubble(img, scene, rng, centres=[centre], scale=rng.uniform(0.55, 0.8))
    img = img.copy()
    radius = rng.uniform(0.022, 0.035) * scene.side
    kit.paint_disc(img, centre + rng.normal(0, 0.01 * scene.side, 2), radius, kit.hsv(0.08, 0.3, 0.06), 0.95)
    return img


def seam_mould(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    """Mould along a seam: a seam gap, with dark specks strung along the gap's line."""
    vertical = mark.orientation == "vertical"
    side = scene.side
    before = img
    img = kit.seam_gap(img, scene, rng, vertical=vertical)
    # where the gap runs: the column (row) whose pixels changed most
    change = np.abs(img - before).sum(-1)
    line = float(np.argmax(change.sum(0 if vertical else 1))) + 0.5
    img = img.copy()
    start, length = rng.uniform(0.0, 0.4) * side, rng.uniform(0.5, 1.0) * side
    green = rng.random() < 0.6
    for _ in range(int(rng.integers(30, 60))):
        along = start + rng.uniform(0, length)
        across = line + rng.normal(0, 0.035 * side)
        spot = np.array([along, across] if vertical else [across, along])
        hue = rng.uniform(0.2, 0.38) if green else 0.0
        colour = kit.hsv(hue, rng.uniform(0.3, 0.8) if green else 0.0, rng.uniform(0.04, 0.25))
        kit.paint_disc(img, spot, rng.uniform(0.01, 0.022) * side, colour, rng.uniform(0.75, 0.95))
    return img


def ringed_tear(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    """A tear inside a stain: water that came through the rip left a brown ring around it."""
    centre = place(rng, mark.position, int(scene.side))
    tint = kit.hsv(rng.uniform(0.06, 0.13), rng.uniform(0.5, 0.8), rng.uniform(0.45, 0.7))
    img = kit.stain(img, scene, rng, centre=centre, tint=tint, scale=rng.uniform(1.1, 1.4))
    heading = heading_of(mark.orientation, rng)
    return kit.tear(img, scene, rng, centre=centre, heading=heading, scale=rng.uniform(0.4, 0.6))


def faint_stain(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    """A stain at a quarter to two fifths of a stain's usual strength: barely off the clean paper."""
    centre = place(rng, mark.position, int(scene.side))
    tint = kit.hsv(rng.uniform(0.06, 0.14), rng.uniform(0.45, 0.75), rng.uniform(0.5, 0.75))
    stained = kit.stain(img, scene, rng, centre=centre, tint=tint, scale=rng.uniform(0.9, 1.3))
    return img + rng.uniform(0.25, 0.4) * (stained - img)


def hairline(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    """One long straight crack a fraction of a pixel wide, drawn at 4x and averaged down."""
    side = scene.side
    heading = heading_of(mark.orientation, rng)
    half = rng.uniform(0.3, 0.45) * side
    mid = rng.uniform(0.35, 0.65, 2) * side
    step = np.array([math.sin(heading), math.cos(heading)])
    h, w = scene.yy.shape
    fine = (np.mgrid[0 : h * SUPERSAMPLE, 0 : w * SUPERSAMPLE] + 0.5) / SUPERSAMPLE
    dist = kit.segment_distance(fine[0], fine[1], mid - half * step, mid + half * step)
    mask = kit.inside(dist, rng.uniform(0.12, 0.2), 0.25)
    mask = mask.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean((1, 3))
    return kit.blend(img, mask, kit.hsv(0.08, 0.25, rng.uniform(0.05, 0.2)), rng.uniform(0.75, 0.95))


NOVEL_PAINTERS: dict[str, Callable[..., np.ndarray]] = {
    "nail_pop": nail_pop,
    "seam_mould": seam_mould,
    "ringed_tear": ringed_tear,
    "faint_stain": faint_stain,
    "hairline": hairline,
}
TASK_PAINTERS: dict[str, Callable[..., np.ndarray]] = {**MARK_PAINTERS, **NOVEL_PAINTERS}
