"""The downstream task: ten wallpaper-defect classes, five of them new to `mini` and rare.

    python -m clipcls.world.task --out DIR [--seed 0]

Why it is a fair test of fine-tuning with descriptions: the five common classes (clean, mould,
tear, stain, bubble) are marks `mini` saw in pretraining, but never on wallpaper or painted wall
(scene.HELD_OUT_MARKS on scene.HELD_OUT_MATERIALS), so zero-shot must compose words learned on
steel, wood or fabric. The five subtle classes are concepts it never saw on any material
(novel.py): a nail pop (a bubble with a hole), mould along a seam, a stain ringing a tear, a faint
stain, a hairline crack; each has a look-alike among the common classes, and the words that tell
them apart ("faint", "along", "around") were captioned rarely. They are also the rare classes
(8-16 training images), as subtle defects are on a real line.

Splits: `train` (imbalanced 25:1), `val` (balanced, for choosing a checkpoint only), `test`
(balanced, 100 a class: the only split a result is reported on) and `shifted` (the test's
scenes photographed by a camera pretraining never used: out of focus, under a coloured light).

Writes DIR/{train,val,test,shifted}/<class>/<class>_<i>.jpg and, last, DIR/.complete; a finished
set with the same seed and counts is reused as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from clipcls.data.demo import jpeg_bytes
from clipcls.io import atomic_write_bytes
from clipcls.world.novel import NOVEL_PAINTERS, TASK_PAINTERS
from clipcls.world.render import render_scene
from clipcls.world.scene import Mark, Scene, draw_mark, draw_scene

# Class -> the mark kind it shows on wallpaper ("none" for clean); novel kinds are novel.py's.
TASK_KINDS: dict[str, str] = {
    "clean": "none",
    "mould": "cluster",
    "tear": "tear",
    "stain": "stain",
    "bubble": "bubble",
    "nail_pop": "nail_pop",
    "seam_mould": "seam_mould",
    "ringed_tear": "ringed_tear",
    "faint_stain": "faint_stain",
    "hairline": "hairline",
}
SUBTLE_CLASSES: tuple[str, ...] = tuple(name for name, kind in TASK_KINDS.items() if kind in NOVEL_PAINTERS)
TRAIN_COUNTS: dict[str, int] = {
    "clean": 200,
    "mould": 80,
    "tear": 60,
    "stain": 60,
    "bubble": 40,
    "nail_pop": 16,
    "seam_mould": 12,
    "ringed_tear": 12,
    "faint_stain": 10,
    "hairline": 8,
}
SPLIT_COUNTS: dict[str, dict[str, int]] = {
    "train": TRAIN_COUNTS,
    "val": dict.fromkeys(TASK_KINDS, 30),
    "test": dict.fromkeys(TASK_KINDS, 100),
    "shifted": dict.fromkeys(TASK_KINDS, 50),
}
# Every split: pale wallpaper in good light; `shifted` changes only the camera (see `shifted_camera`).
_LOOK: dict[str, tuple[str, ...]] = {
    "materials": ("wallpaper",),
    "colours": ("white", "yellow", "pink", "blue", "green", "grey"),
    "lightings": ("even", "bright"),
}
TASK_VERSION = 2  # bump whenever the world's painting or this file's scenes change
MARKER_NAME = ".complete"
JPEG_QUALITY = 92


def task_scene(class_name: str, split: str, seed: int, index: int) -> Scene:
    """Scene `index` of `class_name` in `split`; its own generator, so sets are prefix-stable.
    (`shifted` draws the same scenes as `test`: only its camera differs.)"""
    class_index = list(TASK_KINDS).index(class_name)
    split_index = list(SPLIT_COUNTS).index("test" if split == "shifted" else split)
    rng = np.random.default_rng([seed, split_index, class_index, index, 9])
    kind = TASK_KINDS[class_name]
    drawn = "none" if kind in NOVEL_PAINTERS else kind
    scene = draw_scene(
        rng, int(rng.integers(2**31)), _LOOK["materials"], (drawn,), _LOOK["colours"], _LOOK["lightings"]
    )
    if class_name == "mould":  # dense dark green or black specks, as mould grows
        mark = draw_mark(rng, "cluster")
        colour = "green" if rng.random() < 0.6 else "black"
        scene = dataclasses.replace(scene, mark=dataclasses.replace(mark, colour=colour, shade="dark", density="dense"))
    elif class_name == "stain":  # water and nicotine stains are brown to yellow
        colour = str(rng.choice(["brown", "yellow", "orange"]))
        scene = dataclasses.replace(scene, mark=dataclasses.replace(scene.mark, colour=colour))
    elif kind in NOVEL_PAINTERS:
        orientation = str(
            rng.choice(["vertical", "horizontal"] if kind == "seam_mould" else ["vertical", "horizontal", "diagonal"])
        )
        scene = dataclasses.replace(scene, mark=Mark(kind=kind, orientation=orientation))
    return scene


def shifted_camera(pixels: np.ndarray, seed: int) -> np.ndarray:
    """The shifted split's camera, never used in pretraining: out of focus (Gaussian blur of
    0.6-1.0 px) under a warm or cool coloured light."""
    rng = np.random.default_rng([seed, 5])
    blurred = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.0)))
    warm = np.array([1.1, 1.0, 0.78]) if rng.random() < 0.5 else np.array([0.82, 0.95, 1.12])
    cast = 1 + rng.uniform(0.6, 1.0) * (warm - 1)
    return np.clip(np.asarray(blurred, dtype=np.float64) * cast, 0, 255).round().astype(np.uint8)


def render_task_image(class_name: str, split: str, seed: int, index: int) -> np.ndarray:
    """The (64, 64, 3) uint8 picture `index` of `class_name` in `split`."""
    scene = task_scene(class_name, split, seed, index)
    pixels = render_scene(scene, painters=TASK_PAINTERS)
    return shifted_camera(pixels, scene.seed) if split == "shifted" else pixels


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """A rendered scene as the task's JPEG bytes (the demo set's encoder, the task's quality)."""
    return jpeg_bytes(Image.fromarray(pixels, mode="RGB"), JPEG_QUALITY)


def _record(seed: int, counts: dict[str, dict[str, int]]) -> dict[str, object]:
    return {"version": TASK_VERSION, "seed": seed, "counts": counts}


def split_counts(train: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """SPLIT_COUNTS with the train split's counts replaced by `train` (few-shot variants)."""
    return {**SPLIT_COUNTS, "train": dict(train)} if train else SPLIT_COUNTS


def is_complete(root: Path, seed: int, counts: dict[str, dict[str, int]] | None = None) -> bool:
    """True when a finished set with this seed and these counts is on disk."""
    counts = counts or SPLIT_COUNTS
    try:
        if json.loads((root / MARKER_NAME).read_text()) != _record(seed, counts):
            return False
    except (OSError, ValueError):
        return False
    return all(
        len(list((root / split / name).glob("*.jpg"))) == count
        for split, per_class in counts.items()
        for name, count in per_class.items()
    )


def make_task(root: str | os.PathLike, seed: int = 0, train_counts: dict[str, int] | None = None) -> Path:
    """Write the four splits under `root` (or reuse a complete set) and return `root`.

    `train_counts` replaces the training split's counts (a prefix of the same pictures)."""
    root = Path(root)
    counts_by_split = split_counts(train_counts)
    if is_complete(root, seed, counts_by_split):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).unlink(missing_ok=True)
    for split, counts in counts_by_split.items():
        for name, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*"):  # files from another seed's or version's counts
                stale.unlink()
            for i in range(count):
                pixels = render_task_image(name, split, seed, i)
                atomic_write_bytes(
                    encode_jpeg(pixels),
                    folder / f"{name}_{i}.jpg",
                    fsync=False,
                )
    atomic_write_bytes(json.dumps(_record(seed, counts_by_split), indent=1).encode(), root / MARKER_NAME)
    return root


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m clipcls.world.task", description="Write the held-out ten-class wallpaper-defect task."
    )
    parser.add_argument("--out", required=True, help="folder for train/, val/ and shifted/")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same pictures")
    args = parser.parse_args(argv)
    root = make_task(args.out, args.seed)
    for split, counts in SPLIT_COUNTS.items():
        print(
            f"{split}: {sum(counts.values())} images in {root / split}: "
            + ", ".join(f"{k}={v}" for k, v in counts.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
