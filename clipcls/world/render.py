"""Painting a `Scene`: the surface, its mark and the camera, with the demo set's drawing kit.

Everything is numpy on small images (64 px by default), so a core paints hundreds of pictures
a second. Marks the demo already draws (mould, tear, seam, stain, bubble, scratch) are the demo's
drawers steered by the scene's attributes; the rest are built from the same helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clipcls.data import paint as kit
from clipcls.world.scene import Mark, Scene
from clipcls.world.vocab import COLOURS, POSITIONS

ZOOM = 2.0  # surfaces are designed at the demo's 128-256 px scale; 64 px shows them zoomed out


@dataclass(frozen=True)
class Surface:
    """A material as the demo's two-colour design, rendered at zoomed pixel coordinates."""

    design: kit.Wallpaper

    def render(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Return the (H, W, 3) surface at coordinates (yy, xx); the seam redraws it shifted."""
        return self.design.render(yy * ZOOM, xx * ZOOM)


# --- Colours ---


def surface_rgb(name: str, rng: np.random.Generator, pastel: bool) -> np.ndarray:
    """A shade of colour `name` for a surface; pastel ones are pale, as wallpaper is."""
    h, s, v = COLOURS[name]
    h += rng.uniform(-0.02, 0.02)
    if pastel:
        return kit.hsv(h, s * rng.uniform(0.3, 0.55), max(v, 0.6) * rng.uniform(0.95, 1.05) + 0.1)
    return kit.hsv(h, s * rng.uniform(0.6, 0.95), v * rng.uniform(0.85, 1.1))


def mark_rgb(name: str, shade: str | None, rng: np.random.Generator) -> np.ndarray:
    """A shade of colour `name` for a mark: darker for 'dark', paler for 'light'."""
    h, s, v = COLOURS[name]
    h, s, v = h + rng.uniform(-0.02, 0.02), s * rng.uniform(0.85, 1.1), v * rng.uniform(0.9, 1.1)
    if shade == "dark":
        v *= 0.45
    elif shade == "light":
        s, v = s * 0.5, 0.55 + 0.45 * v
    return kit.hsv(h, s, v)


# --- Surfaces ---


def _brushed(rng: np.random.Generator) -> kit.Pattern:
    """Brushed metal: fine streaks along one axis with a soft sheen across the plate."""
    streaks = kit.fourier_noise(rng, 16, 0.08, 0.4)
    angle, sheen = rng.uniform(0, math.pi), rng.uniform(0.004, 0.012)
    return lambda yy, xx: np.clip(
        0.5 + 0.25 * streaks(yy * 0.02, xx) + 0.3 * np.sin(sheen * (xx * math.cos(angle) + yy * math.sin(angle))), 0, 1
    )


def _tiles(rng: np.random.Generator) -> kit.Pattern:
    """Square tiles: 1 on the grout lines, 0 on the tiles."""
    cell, grout = rng.uniform(30, 60), rng.uniform(2.0, 3.5)

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        dy = np.abs((yy / cell) % 1.0 - 0.5) * cell
        dx = np.abs((xx / cell) % 1.0 - 0.5) * cell
        edge = 0.5 * cell - np.maximum(dy, dx)  # distance to the nearest grout line
        return kit.inside(edge, grout, 1.5)

    return pattern


def _wood(rng: np.random.Generator) -> kit.Pattern:
    """Wood grain: wavy bands along the board, warped by smooth noise."""
    warp, period = kit.fourier_noise(rng, 6, 0.004, 0.02), rng.uniform(8, 20)
    vertical = rng.random() < 0.5

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        across = xx if vertical else yy
        return 0.5 + 0.5 * np.sin(2 * math.pi * (across + 18 * warp(yy, xx)) / period)

    return pattern


def _weave(rng: np.random.Generator) -> kit.Pattern:
    """A fabric's weave: a fine grid of over-and-under threads (used as the grain)."""
    f = 2 * math.pi / rng.uniform(4, 7)
    return lambda yy, xx: np.sin(f * yy) * np.sin(f * xx) + 0.4 * np.sin(f * (yy + xx))


def make_surface(scene: Scene, rng: np.random.Generator) -> Surface:
    """Draw the scene's material in its colour and pattern (designs reuse the demo's kit)."""
    pastel = scene.material in ("wallpaper", "painted wall", "fabric")
    a = surface_rgb(scene.colour, rng, pastel)
    b = a * rng.uniform(0.82, 0.95)  # tone-on-tone second colour
    fine = kit.fourier_noise(rng, 12, 0.15, 0.45)
    material = scene.material
    if material in ("wallpaper", "fabric") or (material == "painted wall"):
        pattern = kit.PATTERNS[scene.pattern](rng)
        grain, amp = (_weave(rng), 0.12) if material == "fabric" else (fine, 0.02)
        if material == "painted wall":
            amp = 0.05
    elif material == "steel":
        pattern, grain, amp, b = _brushed(rng), fine, 0.01, np.clip(a * 1.35 + 0.1, 0, 1)
    elif material == "tile":
        pattern, grain, amp = _tiles(rng), fine, 0.01
        b = np.full(3, rng.uniform(0.55, 0.85))  # grout
    elif material == "wood":
        pattern, grain, amp, b = _wood(rng), fine, 0.04, a * rng.uniform(0.55, 0.75)
    else:  # concrete: blotchy, with a coarse grain
        pattern, grain, amp = kit.PATTERNS["plain"](rng), fine, 0.1
    return Surface(kit.Wallpaper(pattern, grain, a, b, amp))


# --- Marks ---


def place(rng: np.random.Generator, position: str | None, side: int) -> np.ndarray:
    """A (y, x) point in the position's third of the picture, or anywhere away from the edge."""
    if position is None:
        return rng.uniform(0.2, 0.8, 2) * side
    row, col = divmod(POSITIONS.index(position), 3)
    return (np.array([row + 0.5, col + 0.5]) / 3 + rng.uniform(-0.06, 0.06, 2)) * side


def heading_of(orientation: str | None, rng: np.random.Generator) -> float:
    """A direction in radians (0 = rightwards, pi/2 = downwards) for the orientation."""
    base = {"horizontal": 0.0, "vertical": math.pi / 2, None: rng.uniform(0, math.pi)}.get(
        orientation, rng.choice([math.pi / 4, 3 * math.pi / 4])
    )
    return float(base + rng.normal(0, 0.08))


def centres(mark: Mark, rng: np.random.Generator, side: int, spread: float) -> list[np.ndarray]:
    """Where each of the mark's `count` items sits: grouped at its position, else scattered."""
    if mark.position is None:
        return [rng.uniform(0.12, 0.88, 2) * side for _ in range(mark.count)]
    at = place(rng, mark.position, side)
    return [np.clip(at + rng.normal(0, spread * side, 2), 2, side - 2) for _ in range(mark.count)]


def _spots(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator) -> np.ndarray:
    img = img.copy()
    low, high = (0.02, 0.035) if mark.size == "small" else (0.05, 0.08)
    for centre in centres(mark, rng, int(scene.side), 0.08):
        colour = mark_rgb(mark.colour or "black", mark.shade, rng)
        kit.paint_disc(img, centre, rng.uniform(low, high) * scene.side, colour, 0.95)
    return img


def _cluster(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    return kit.mould(
        img,
        scene,
        rng,
        centre=place(rng, mark.position, int(scene.side)),
        speck=lambda r: mark_rgb(mark.colour or "black", mark.shade or "dark", r),
        spots=25 if mark.density == "sparse" else 80,
        scale=0.7 if mark.size == "small" else 1.3,
    )


def _stain(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    h, s, _ = COLOURS[mark.colour or "brown"]
    tint = kit.hsv(h, s * rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.7))
    return kit.stain(
        img,
        scene,
        rng,
        centre=place(rng, mark.position, int(scene.side)),
        tint=tint,
        scale=0.6 if mark.size == "small" else 1.2,
    )


def _blob(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    centre = place(rng, mark.position, int(scene.side))
    radius = rng.uniform(*((0.07, 0.11) if mark.size == "small" else (0.15, 0.22))) * scene.side
    dy, dx = scene.yy - centre[0], scene.xx - centre[1]
    angle = np.arctan2(dy, dx)
    wobble = sum(rng.uniform(0.05, 0.18) * np.cos(k * angle + rng.uniform(0, 6.3)) for k in range(2, 5))
    mask = kit.inside(np.hypot(dy, dx) / (1 + wobble), radius, 1.2)
    return kit.blend(img, mask, mark_rgb(mark.colour or "red", mark.shade, rng), 0.92)


def _lines(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    heading, side = heading_of(mark.orientation, rng), scene.side
    half = rng.uniform(*((0.3, 0.45) if mark.size == "long" else (0.12, 0.2))) * side
    step = np.array([math.sin(heading), math.cos(heading)])
    normal = np.array([step[1], -step[0]])
    mid, gap = rng.uniform(0.35, 0.65, 2) * side, rng.uniform(0.1, 0.18) * side
    colour = mark_rgb(mark.colour or "black", mark.shade, rng)
    for i in range(mark.count):
        at = mid + (i - (mark.count - 1) / 2) * gap * normal
        dist = kit.segment_distance(scene.yy, scene.xx, at - half * step, at + half * step)
        img = kit.blend(img, kit.inside(dist, rng.uniform(0.012, 0.02) * side, 1.0), colour, 0.9)
    return img


def _crack(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    length = rng.uniform(*((0.7, 1.0) if mark.size == "long" else (0.35, 0.5))) * scene.side
    heading = heading_of(mark.orientation, rng)
    start = place(rng, mark.position, int(scene.side)) - 0.5 * length * np.array([math.sin(heading), math.cos(heading)])
    path = kit.jagged_path(rng, start, length, heading)
    dist = kit.polyline_distance(scene.yy, scene.xx, path)
    dark = kit.hsv(0.08, 0.2, rng.uniform(0.05, 0.2))
    return kit.blend(img, kit.inside(dist, rng.uniform(0.005, 0.009) * scene.side, 1.0), dark, 0.9)


def _scratch(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    bright = None if mark.shade is None else mark.shade == "light"
    return kit.scratch(
        img,
        scene,
        rng,
        heading=heading_of(mark.orientation, rng),
        centre=place(rng, mark.position, int(scene.side)),
        bright=bright,
        count=mark.count,
    )


def _tear(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    return kit.tear(
        img,
        scene,
        rng,
        centre=place(rng, mark.position, int(scene.side)),
        heading=heading_of(mark.orientation, rng),
        scale=1.1 if mark.size == "long" else 0.6,
    )


def _seam(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    return kit.seam_gap(img, scene, rng, vertical=mark.orientation == "vertical")


def _holes(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    img = img.copy()
    low, high = (0.025, 0.04) if mark.size == "small" else (0.06, 0.09)
    for centre in centres(mark, rng, int(scene.side), 0.1):
        radius = rng.uniform(low, high) * scene.side
        kit.paint_disc(img, centre + 0.3 * radius, 1.25 * radius, np.full(3, 0.95), 0.5)  # rim
        kit.paint_disc(img, centre, radius, kit.hsv(0.08, 0.3, rng.uniform(0.02, 0.1)), 0.97)
    return img


def _domes(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    return kit.bubble(
        img,
        scene,
        rng,
        centres=centres(mark, rng, int(scene.side), 0.15),
        scale=0.6 if mark.size == "small" else 1.1,
        depth=-1.0 if mark.kind == "dent" else 1.0,
    )


def _rust(img: np.ndarray, scene: kit.Scene, mark: Mark, rng: np.random.Generator):
    centre = place(rng, mark.position, int(scene.side))
    radius = rng.uniform(*((0.1, 0.15) if mark.size == "small" else (0.2, 0.3))) * scene.side
    rough = kit.fourier_noise(rng, 16, 0.05, 0.3)(scene.yy, scene.xx)
    dist = np.hypot(scene.yy - centre[0], scene.xx - centre[1]) + 0.25 * radius * rough
    mask = kit.inside(dist, radius, 3.0)
    if mark.density == "sparse":
        mask = mask * (rough > 0.1)
    colour = kit.hsv(rng.uniform(0.04, 0.09), rng.uniform(0.7, 0.9), rng.uniform(0.35, 0.6))
    img = kit.blend(img, mask, colour, 0.9)
    return img * (1 + 0.15 * rough * mask)[..., None]


MARK_PAINTERS: dict[str, Callable[..., np.ndarray]] = {
    "spots": _spots,
    "cluster": _cluster,
    "stain": _stain,
    "blob": _blob,
    "line": _lines,
    "crack": _crack,
    "scratch": _scratch,
    "tear": _tear,
    "seam": _seam,
    "hole": _holes,
    "bubble": _domes,
    "dent": _domes,
    "rust": _rust,
}

# --- The camera ---

_LIGHT: dict[str, tuple[tuple[float, float], float]] = {  # lighting -> (level range, tilt)
    "even": ((0.93, 1.05), 0.04),
    "dim": ((0.42, 0.58), 0.06),
    "bright": ((1.1, 1.2), 0.04),
    "uneven": ((0.85, 1.05), 0.05),
}


def _shadow(img: np.ndarray, scene: kit.Scene, rng: np.random.Generator) -> np.ndarray:
    """A strong light gradient: one side of the picture falls into shadow."""
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * scene.xx + np.sin(angle) * scene.yy) / scene.side
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    return img * (1 - rng.uniform(0.5, 0.7) * ramp)[..., None]


def render_scene(
    scene: Scene, side: int = 64, painters: dict[str, Callable[..., np.ndarray]] | None = None
) -> np.ndarray:
    """Paint `scene` as an (side, side, 3) uint8 array; the same scene gives the same pixels.

    `painters` (mark kind -> painter) defaults to MARK_PAINTERS, the marks pretraining shows; the
    downstream task passes novel.TASK_PAINTERS, which adds the marks only it has."""
    rng = np.random.default_rng(scene.seed)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    surface = make_surface(scene, rng)
    canvas = kit.Scene(surface, yy, xx)
    img = surface.render(yy, xx)
    if scene.mark is not None:
        img = (painters or MARK_PAINTERS)[scene.mark.kind](img, canvas, scene.mark, rng)
    if scene.lighting == "uneven":
        img = _shadow(img, canvas, rng)
    level, tilt = _LIGHT[scene.lighting]
    img = kit.photograph(img, canvas, rng, level=level, tilt=tilt)
    return np.round(img * 255).astype(np.uint8)
