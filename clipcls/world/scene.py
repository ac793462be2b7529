"""What a world picture shows: a surface and at most one kind of mark, as plain attributes.

A `Scene` is drawn first (attributes only, cheap), then painted (render.py) and captioned
(captions.py) from those attributes, so the caption always tells the truth about the pixels and
pretraining can re-caption a stored picture without repainting it.

Held out from pretraining: the downstream task's classes are marks on wallpaper (see task.py),
so `pretraining_scene` never draws wallpaper, nor painted wall (the same painter with a
different grain: a look-alike), with any of `HELD_OUT_MARKS`; the model sees tears, seams,
bubbles... only on steel, tile, wood, fabric and concrete. The task's subtle classes go further:
their marks (a bubble with a hole, mould along a seam, a stain ringing a tear, a faint stain, a
hairline) are painted by clipcls/world/novel.py, which pretraining never calls on any material.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipcls.world.vocab import COLOURS, MARK_KINDS, POSITIONS

HELD_OUT_MATERIALS: frozenset[str] = frozenset({"wallpaper", "painted wall"})
HELD_OUT_MARKS: frozenset[str] = frozenset(
    {"none", "cluster", "tear", "seam", "stain", "bubble", "hole", "crack", "line", "scratch"}
)

# Material -> colours it comes in and patterns it carries.
MATERIAL_COLOURS: dict[str, tuple[str, ...]] = {
    "wallpaper": tuple(c for c in COLOURS if c != "black"),
    "painted wall": tuple(COLOURS),
    "steel": ("grey", "blue", "black", "white"),
    "tile": tuple(COLOURS),
    "wood": ("brown", "red", "yellow", "orange", "grey", "black"),
    "fabric": tuple(COLOURS),
    "concrete": ("grey", "white", "brown"),
}
MATERIAL_PATTERNS: dict[str, tuple[str, ...]] = {
    "wallpaper": ("plain", "striped", "dotted", "checked", "floral"),
    "fabric": ("plain", "striped", "dotted", "checked"),
}
LIGHTINGS: tuple[str, ...] = ("even", "dim", "bright", "uneven")

# Which attributes each mark kind carries (the others stay None).
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "spots": frozenset({"count", "size", "colour", "shade", "position"}),
    "cluster": frozenset({"colour", "shade", "size", "density", "position"}),
    "stain": frozenset({"colour", "size", "position"}),
    "blob": frozenset({"colour", "shade", "size", "position"}),
    "line": frozenset({"count", "colour", "shade", "orientation", "length"}),
    "crack": frozenset({"orientation", "length", "position"}),
    "scratch": frozenset({"count", "orientation", "shade", "position"}),
    "tear": frozenset({"orientation", "length", "position"}),
    "seam": frozenset({"orientation"}),
    "hole": frozenset({"count", "size", "position"}),
    "bubble": frozenset({"count", "size", "position"}),
    "dent": frozenset({"count", "size", "position"}),
    "rust": frozenset({"size", "density", "position"}),
}
# Counts each kind may show; position is only said when the marks sit together.
_COUNTS: dict[str, tuple[int, ...]] = {
    "spots": (1, 2, 3, 5, 12, 30),
    "line": (1, 2, 3),
    "scratch": (3, 4, 5, 6),
    "hole": (1, 2, 3, 5),
    "bubble": (1, 2, 3),
    "dent": (1, 2, 3),
}


@dataclass(frozen=True)
class Mark:
    """One kind of mark and its attributes; None means 'not part of this mark'."""

    kind: str
    count: int = 1
    size: str | None = None  # small | large, or short | long for line-like marks
    colour: str | None = None
    shade: str | None = None  # dark | light
    position: str | None = None  # a POSITIONS cell
    orientation: str | None = None  # vertical | horizontal | diagonal
    density: str | None = None  # sparse | dense


@dataclass(frozen=True)
class Scene:
    """A surface, its light and its mark; `seed` fixes everything the attributes leave open."""

    material: str
    colour: str
    pattern: str
    lighting: str
    mark: Mark | None
    seed: int


def is_held_out(scene: Scene) -> bool:
    """True for what the downstream task owns and pretraining must never show: its marks on the
    held-out materials, and any mark pretraining has no kind for (novel.py's) on any material."""
    kind = scene.mark.kind if scene.mark else "none"
    return kind not in MARK_KINDS or (scene.material in HELD_OUT_MATERIALS and kind in HELD_OUT_MARKS)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def draw_mark(rng: np.random.Generator, kind: str) -> Mark:
    """Draw the attributes a mark of `kind` carries."""
    has = _ATTRIBUTES[kind]
    count = int(rng.choice(_COUNTS[kind])) if "count" in has else 1
    together = count <= 3 or kind == "scratch"  # a group small enough to have one place
    return Mark(
        kind=kind,
        count=count,
        size=_pick(rng, ("small", "large"))
        if "size" in has
        else (_pick(rng, ("short", "long")) if "length" in has else None),
        colour=_pick(rng, list(COLOURS)) if "colour" in has else None,
        shade=_pick(rng, ("dark", "light")) if "shade" in has and rng.random() < 0.6 else None,
        position=_pick(rng, POSITIONS) if "position" in has and together else None,
        orientation=_pick(rng, ("vertical", "horizontal") if kind == "seam" else ("vertical", "horizontal", "diagonal"))
        if "orientation" in has
        else None,
        density=_pick(rng, ("sparse", "dense")) if "density" in has else None,
    )


def draw_scene(
    rng: np.random.Generator,
    seed: int,
    materials: tuple[str, ...] = tuple(MATERIAL_COLOURS),
    kinds: tuple[str, ...] = MARK_KINDS,
    colours: tuple[str, ...] | None = None,
    lightings: tuple[str, ...] = LIGHTINGS,
) -> Scene:
    """Draw a scene from the given materials, mark kinds, colours and lightings."""
    material = _pick(rng, materials)
    allowed = [c for c in MATERIAL_COLOURS[material] if colours is None or c in colours]
    kind = _pick(rng, kinds)
    return Scene(
        material=material,
        colour=_pick(rng, allowed or MATERIAL_COLOURS[material]),
        pattern=_pick(rng, MATERIAL_PATTERNS.get(material, ("plain",))),
        lighting=_pick(rng, lightings),
        mark=None if kind == "none" else draw_mark(rng, kind),
        seed=seed,
    )


def pretraining_scene(seed: int, index: int) -> Scene:
    """Scene `index` of the pretraining stream: any scene except the held-out combinations."""
    rng = np.random.default_rng([seed, index, 17])
    material = _pick(rng, tuple(MATERIAL_COLOURS))
    kinds = MARK_KINDS
    if material in HELD_OUT_MATERIALS:
        kinds = tuple(k for k in MARK_KINDS if k not in HELD_OUT_MARKS)
    # "none" is one kind among 14: clean surfaces are about 7% of the stream.
    return draw_scene(rng, int(rng.integers(2**31)), materials=(material,), kinds=kinds)
