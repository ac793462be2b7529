"""The drawing kit of the procedural images: wallpaper patterns, marks and the camera.

The demo set (demo_draw.py) and the world's image-caption pairs (clipcls/world/render.py) are both
painted with these functions, so a fix to one reaches the other. Everything works on float RGB
arrays in [0, 1] and pixel-coordinate grids, and draws only from the generator it is given.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Pattern = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Wallpaper:
    """A wallpaper design that can be rendered at any (shifted) pixel coordinates."""

    pattern: Pattern  # mix weight in [0, 1] between the two colours
    grain: Pattern  # fine paper texture, roughly zero-mean
    colour_a: np.ndarray
    colour_b: np.ndarray
    grain_amp: float

    def render(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Return an (H, W, 3) float image of the design at coordinates (yy, xx)."""
        mix = self.pattern(yy, xx)[..., None]
        img = self.colour_a * (1.0 - mix) + self.colour_b * mix
        return img * (1.0 + self.grain_amp * self.grain(yy, xx))[..., None]


@dataclass(frozen=True)
class Scene:
    """What a defect drawer may need besides the image: the wallpaper and the pixel grid."""

    wallpaper: Wallpaper
    yy: np.ndarray
    xx: np.ndarray

    @property
    def side(self) -> float:
        """The short side in pixels; defect sizes scale with it so they survive downscaling."""
        return float(min(self.yy.shape))


# --- Small drawing helpers ---


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at edge0 to 1 at edge1 (edges may be in either order)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def inside(dist: np.ndarray, radius: float, feather: float = 1.0) -> np.ndarray:
    """Anti-aliased mask: 1 where dist < radius, fading to 0 over `feather` pixels."""
    return smoothstep(radius + feather / 2, radius - feather / 2, dist)


def blend(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """Paint `colour` over `img` with per-pixel opacity alpha * mask."""
    weight = (alpha * mask)[..., None]
    return img * (1.0 - weight) + colour * weight


def segment_distance(yy: np.ndarray, xx: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the segment p0-p1 (points given as (y, x))."""
    d = p1 - p0
    length2 = max(float(d @ d), 1e-9)
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0.0, 1.0)
    return np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))


def polyline_distance(yy: np.ndarray, xx: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of every pixel to a polyline through `points` (an (N, 2) array of (y, x))."""
    dists = [segment_distance(yy, xx, a, b) for a, b in zip(points[:-1], points[1:])]
    return np.minimum.reduce(dists)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour in [0, 1] from hue, saturation and value."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def _random_point(rng: np.random.Generator, shape: tuple[int, ...], margin: float) -> np.ndarray:
    """A (y, x) point at least `margin` (fraction of each side) away from the border."""
    h, w = shape[:2]
    return np.array([rng.uniform(margin, 1 - margin) * h, rng.uniform(margin, 1 - margin) * w])


# --- Wallpaper backgrounds. Each returns a Pattern: a function of pixel coordinates, so the seam
# defect can redraw the same design shifted by a few pixels. ---


def _rotated(yy: np.ndarray, xx: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) rotated by theta."""
    c, s = math.cos(theta), math.sin(theta)
    return xx * c + yy * s, -xx * s + yy * c


def fourier_noise(rng: np.random.Generator, n: int, fmin: float, fmax: float) -> Pattern:
    """Smooth random texture: a sum of n random plane waves with frequencies in [fmin, fmax]."""
    freq = rng.uniform(fmin, fmax, n)
    angle = rng.uniform(0, 2 * math.pi, n)
    phase = rng.uniform(0, 2 * math.pi, n)
    fy, fx = freq * np.sin(angle), freq * np.cos(angle)

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        # The inputs are pixel grids (yy constant along rows, xx along columns), so with
        # cos(a + b) = cos a cos b - sin a sin b the sum of waves is two small products of
        # (H, n) and (W, n) tables: several times faster than n full-image cosines, and this is
        # the generator's hot spot. einsum rather than @ because BLAS threads on such small
        # products cost more than they save on a busy machine.
        a = 2 * math.pi * yy[:, :1] * fy  # (H, n)
        b = 2 * math.pi * xx[:1, :].T * fx + phase  # (W, n)
        waves = np.einsum("hk,wk->hw", np.cos(a), np.cos(b))
        waves -= np.einsum("hk,wk->hw", np.sin(a), np.sin(b))
        return waves / math.sqrt(n)

    return pattern


def _stripes(rng: np.random.Generator) -> Pattern:
    """Straight stripes, mostly vertical, of random period and width."""
    angles = [0.0, 0.5 * math.pi, 0.25 * math.pi, -0.25 * math.pi]
    theta = float(rng.choice(angles, p=[0.5, 0.2, 0.15, 0.15]))  # mostly vertical, as hung
    period = rng.uniform(10, 36)
    duty = rng.uniform(0.25, 0.6)

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, _ = _rotated(yy, xx, theta)
        tri = np.abs((u / period) % 1.0 - 0.5) * 2  # 0 at stripe centre, 1 between stripes
        return smoothstep(duty + 1 / period, duty - 1 / period, tri)

    return pattern


def _polka(rng: np.random.Generator) -> Pattern:
    """Small dots on a (possibly staggered) square grid."""
    spacing = rng.uniform(14, 34)
    radius = rng.uniform(0.12, 0.28) * spacing
    staggered = rng.random() < 0.5

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        row = np.floor(yy / spacing)
        x = xx + (row % 2) * spacing / 2 if staggered else xx
        dy = (yy / spacing % 1.0 - 0.5) * spacing
        dx = (x / spacing % 1.0 - 0.5) * spacing
        return inside(np.hypot(dy, dx), radius)

    return pattern


def _checker(rng: np.random.Generator) -> Pattern:
    """A soft checkerboard, upright or turned 45 degrees into diamonds."""
    theta = 0.25 * math.pi if rng.random() < 0.6 else 0.0
    cell = rng.uniform(10, 32)

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, v = _rotated(yy, xx, theta)
        return 0.5 + 0.5 * np.tanh(6 * np.sin(math.pi * u / cell) * np.sin(math.pi * v / cell))

    return pattern


def _damask(rng: np.random.Generator) -> Pattern:
    """A damask-like ornament: petalled motifs on a lattice, joined by sine scrolls."""
    period = rng.uniform(28, 60)
    petals = int(rng.integers(3, 7))
    threshold = rng.uniform(0.15, 0.45)
    scroll = rng.uniform(0.2, 0.5)

    def pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        ly = (yy / period % 1.0 - 0.5) * period
        lx = (xx / period % 1.0 - 0.5) * period
        r = np.hypot(ly, lx)
        petal = 0.6 + 0.4 * np.cos(petals * np.arctan2(ly, lx))
        motif = petal * np.exp(-((r / (0.3 * period)) ** 2))
        scrolls = np.cos(2 * math.pi * xx / period) * np.cos(2 * math.pi * yy / period)
        return smoothstep(threshold - 0.08, threshold + 0.08, motif + scroll * scrolls)

    return pattern


def _plain(rng: np.random.Generator) -> Pattern:
    """Plain paper with a faint blotchy mottle."""
    noise = fourier_noise(rng, 8, 0.005, 0.03)
    return lambda yy, xx: np.clip(0.5 + 0.2 * noise(yy, xx), 0.0, 1.0)


_PATTERNS: tuple[Callable[[np.random.Generator], Pattern], ...] = (
    _stripes,
    _polka,
    _checker,
    _damask,
    _plain,
)


def _pastel_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two low-contrast pastel colours: tone-on-tone or two different hues."""
    hue, sat, val = rng.uniform(), rng.uniform(0.08, 0.35), rng.uniform(0.76, 0.95)
    first = hsv(hue, sat, val)
    if rng.random() < 0.5:
        second = hsv(hue, sat * rng.uniform(0.6, 1.3), val - rng.uniform(0.06, 0.16))
    else:
        second = hsv(rng.uniform(), rng.uniform(0.08, 0.35), rng.uniform(0.74, 0.93))
    return first, second


def random_wallpaper(rng: np.random.Generator) -> Wallpaper:
    """Draw a wallpaper design: a pattern, two pastel colours and a paper grain."""
    pattern = _PATTERNS[int(rng.integers(len(_PATTERNS)))](rng)
    colour_a, colour_b = _pastel_pair(rng)
    grain = fourier_noise(rng, 12, 0.15, 0.45)
    return Wallpaper(pattern, grain, colour_a, colour_b, grain_amp=rng.uniform(0.005, 0.025))


# --- Defects. Sizes are fractions of the short side so they stay visible at 64-96 px. ---


def clean(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """No defect: the wallpaper alone."""
    return img


def paint_disc(img: np.ndarray, centre: np.ndarray, radius: float, colour: np.ndarray, alpha: float) -> None:
    """Paint an anti-aliased disc in place, touching only its bounding box (mould has hundreds)."""
    h, w = img.shape[:2]
    y0, y1 = max(int(centre[0] - radius - 2), 0), min(int(centre[0] + radius + 3), h)
    x0, x1 = max(int(centre[1] - radius - 2), 0), min(int(centre[1] + radius + 3), w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    mask = inside(np.hypot(yy - centre[0], xx - centre[1]), radius)
    img[y0:y1, x0:x1] = blend(img[y0:y1, x0:x1], mask, colour, alpha)


def mould(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    speck: Callable[[np.random.Generator], np.ndarray] | None = None,
    spots: int | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """One to three colonies of dark green-black speckles over a faint greenish-grey halo.

    The keyword arguments let clipcls.world draw any coloured cluster of specks: one colony at
    `centre`, specks coloured by `speck`, `spots` specks, spread and specks `scale` times as big.
    Left at their defaults they change nothing, so the demo's pixels stay as they were.
    """
    img = img.copy()
    colonies = int(rng.integers(1, 4)) if centre is None else 1
    for _ in range(colonies):
        where = _random_point(rng, img.shape, 0.2) if centre is None else centre
        spread = rng.uniform(0.08, 0.16) * scene.side * scale
        dist2 = (scene.yy - where[0]) ** 2 + (scene.xx - where[1]) ** 2
        halo = np.exp(-dist2 / (2 * (1.6 * spread) ** 2))
        tint = hsv(rng.uniform(0.18, 0.35), 0.35, 0.35) if speck is None else 0.4 + 0.3 * speck(rng)
        img = blend(img, halo, tint, rng.uniform(0.25, 0.45))
        for _ in range(int(rng.integers(35, 90)) if spots is None else spots):
            spot = where + rng.normal(0, spread, 2)
            if speck is None:
                colour = hsv(rng.uniform(0.18, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.3))
            else:
                colour = speck(rng)
            radius = rng.uniform(0.008, 0.025) * scene.side * max(scale, 1.0)
            paint_disc(img, spot, radius, colour, rng.uniform(0.7, 0.95))
    return img


def jagged_path(rng: np.random.Generator, start: np.ndarray, length: float, heading: float | None = None) -> np.ndarray:
    """A random zig-zag path: short steps whose heading wanders around a main direction.

    `heading` (radians, 0 = rightwards, pi/2 = downwards) fixes the main direction; the world
    sets it to draw a vertical or horizontal crack, the demo leaves it random.
    """
    steps = int(rng.integers(8, 15))
    heading = rng.uniform(0, 2 * math.pi) if heading is None else heading
    points = [start]
    for _ in range(steps):
        angle = heading + rng.normal(0, 0.6)
        step = length / steps * rng.uniform(0.6, 1.4)
        points.append(points[-1] + step * np.array([math.sin(angle), math.cos(angle)]))
    return np.array(points)


def tear(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    heading: float | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """A jagged rip: a dark gap with a band of pale torn paper along one edge.

    The world passes `centre`, `heading` and a length `scale`; the demo leaves them random.
    """
    length = rng.uniform(0.45, 0.9) * scene.side * scale
    if centre is None:
        start = _random_point(rng, img.shape, 0.25)
    else:  # start half a length back, so the rip is centred where the caption says
        back = heading if heading is not None else 0.0
        start = centre - 0.5 * length * np.array([math.sin(back), math.cos(back)])
    path = jagged_path(rng, start, length, heading)
    core = rng.uniform(0.012, 0.022) * scene.side  # half-width: 2.4-4.4% of the side thick
    # The torn paper edge shows its pale backing, offset to one side of the gap.
    edge_offset = rng.normal(0, 1, 2)
    edge_offset *= core / max(float(np.hypot(*edge_offset)), 1e-9)
    edge = polyline_distance(scene.yy, scene.xx, path + edge_offset)
    edge_mask = inside(edge, core * rng.uniform(1.8, 2.6), 1.5)
    img = blend(img, edge_mask, np.array([0.97, 0.95, 0.9]), rng.uniform(0.75, 0.95))
    gap = inside(polyline_distance(scene.yy, scene.xx, path), core, 1.2)
    backing = hsv(0.08, 0.3, rng.uniform(0.08, 0.25))  # the dark wall behind the paper
    return blend(img, gap, backing, rng.uniform(0.8, 0.95))


def seam_gap(img: np.ndarray, scene: Scene, rng: np.random.Generator, *, vertical: bool | None = None) -> np.ndarray:
    """A straight seam across the whole image: dark gap, pattern offset on the far side."""
    vertical = rng.random() < 0.65 if vertical is None else vertical
    across = scene.xx if vertical else scene.yy
    position = rng.uniform(0.2, 0.8) * across.shape[1 if vertical else 0]
    # Redraw the design a few pixels shifted beyond the seam, as a badly hung strip would be.
    shift_across, shift_along = rng.uniform(3, 8) * rng.choice([-1, 1]), rng.uniform(-10, 10)
    dy, dx = (shift_along, shift_across) if vertical else (shift_across, shift_along)
    shifted = scene.wallpaper.render(scene.yy + dy, scene.xx + dx)
    img = np.where((across > position)[..., None], shifted, img)
    half = rng.uniform(0.014, 0.024) * scene.side  # 2.8-4.8% of the side thick
    lip = inside(np.abs(across - position - half * rng.choice([-1.5, 1.5])), 0.6 * half)
    img = blend(img, lip, np.array([1.0, 1.0, 1.0]), rng.uniform(0.2, 0.5))  # lifted paper edge
    gap = inside(np.abs(across - position), half)
    return blend(img, gap, hsv(0.08, 0.2, rng.uniform(0.15, 0.35)), rng.uniform(0.7, 0.9))


def stain(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    tint: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """A soft, irregular brownish-yellow blob with a darker tide line at its rim.

    The world passes `centre`, a `tint` (any colour) and a size `scale`.
    """
    centre = _random_point(rng, img.shape, 0.2) if centre is None else centre
    radius = rng.uniform(0.12, 0.25) * scene.side * scale  # diameter 24-50% of the side
    dy, dx = scene.yy - centre[0], scene.xx - centre[1]
    angle = np.arctan2(dy, dx)
    wobble = sum(rng.uniform(0.03, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * math.pi)) for k in range(2, 6))
    rel = np.hypot(dy, dx) / (radius * (1 + wobble))  # 1 on the irregular rim
    body = smoothstep(1.05, 0.55, rel)
    tide = np.exp(-(((rel - 0.95) / 0.07) ** 2))
    if tint is None:
        tint = hsv(rng.uniform(0.07, 0.14), rng.uniform(0.45, 0.75), rng.uniform(0.55, 0.8))
    strength = rng.uniform(0.4, 0.7)
    img = img * (1 - strength * body[..., None] * (1 - tint))  # multiply: the paper shows through
    return img * (1 - 0.5 * strength * tide[..., None] * (1 - 0.6 * tint))


def bubble(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    *,
    centres: list[np.ndarray] | None = None,
    scale: float = 1.0,
    depth: float = 1.0,
) -> np.ndarray:
    """One to three domes lit from one side: highlight, shaded far side and a small shadow.

    The world passes the dome `centres`, a size `scale`, and `depth` -1 to press the domes in
    (a dent is a bubble lit from the other side).
    """
    light = rng.normal(0, 1, 2)
    light /= max(float(np.hypot(*light)), 1e-9)  # direction towards the light, (y, x)
    strength = rng.uniform(0.35, 0.6)
    count = int(rng.integers(1, 4)) if centres is None else len(centres)
    for i in range(count):
        centre = _random_point(rng, img.shape, 0.2) if centres is None else centres[i]
        radius = rng.uniform(0.1, 0.19) * scene.side * scale  # diameter 20-38% of the side
        dy, dx = (scene.yy - centre[0]) / radius, (scene.xx - centre[1]) / radius
        r = np.hypot(dy, dx)
        dome = inside(r * radius, radius, 1.5)
        # The slope of a dome points outwards; it faces the light on the near side.
        facing = -depth * (dy * light[0] + dx * light[1]) * np.clip(r, 0, 1)
        shade = 1 + strength * facing * dome
        spec = np.exp(-((dy + 0.4 * light[0]) ** 2 + (dx + 0.4 * light[1]) ** 2) / 0.08)
        # A ring of shadow just outside the rim, shifted away from the light.
        rim = np.hypot(dy - 0.15 * light[0], dx - 0.15 * light[1]) * radius
        shadow = inside(rim, 1.12 * radius, 2.0)
        shade = shade * (1 - 0.25 * strength * shadow * (1 - dome))
        spec = spec if depth > 0 else 0.3 * spec  # a hollow catches less light than a dome
        img = img * shade[..., None] + 0.25 * strength * spec[..., None] * dome[..., None]
    return img


def scratch(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    *,
    heading: float | None = None,
    centre: np.ndarray | None = None,
    bright: bool | None = None,
    count: int | None = None,
) -> np.ndarray:
    """Three to six thin straight lines at a similar angle, all bright or all dark.

    The world passes the `heading`, `centre`, brightness and `count`; the demo leaves them random.
    """
    heading = rng.uniform(0, math.pi) if heading is None else heading
    around = _random_point(rng, img.shape, 0.3) if centre is None else centre
    bright = rng.random() < 0.5 if bright is None else bright
    for _ in range(int(rng.integers(3, 7)) if count is None else count):
        angle = heading + rng.normal(0, 0.12)
        half_len = rng.uniform(0.1, 0.25) * scene.side  # 20-50% of the side long
        mid = around + rng.normal(0, 0.12 * scene.side, 2)
        step = half_len * np.array([math.sin(angle), math.cos(angle)])
        dist = segment_distance(scene.yy, scene.xx, mid - step, mid + step)
        width = rng.uniform(0.012, 0.018) * scene.side  # 2.4-3.6% of the side thick
        colour = np.array([1.0, 1.0, 1.0]) if bright else hsv(0.0, 0.0, rng.uniform(0.1, 0.3))
        img = blend(img, inside(dist, width, 1.0), colour, rng.uniform(0.65, 0.9))
    return img


def photograph(
    img: np.ndarray,
    scene: Scene,
    rng: np.random.Generator,
    level: tuple[float, float] = (0.88, 1.08),
    tilt: float = 0.08,
) -> np.ndarray:
    """Uneven lighting and sensor noise, applied after the defect as a camera would.

    `level` is the range of overall brightness and `tilt` the spread of the light's gradient;
    the world widens them to draw dim, bright and unevenly lit photos.
    """
    h, w = img.shape[:2]
    gy, gx = rng.normal(0, tilt, 2)
    light = rng.uniform(*level) * (1 + gy * (scene.yy / h - 0.5) + gx * (scene.xx / w - 0.5))
    noisy = img * light[..., None] + rng.normal(0, rng.uniform(0.005, 0.025), img.shape)
    return np.clip(noisy, 0.0, 1.0)


# Pattern names the world's captions use -> the pattern builders above.
PATTERNS: dict[str, Callable[[np.random.Generator], Pattern]] = {
    "striped": _stripes,
    "dotted": _polka,
    "checked": _checker,
    "floral": _damask,
    "plain": _plain,
}
