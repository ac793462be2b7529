"""The downstream task: the demo's seven wallpaper-defect classes, painted by the world.

    python -m clipcls.world.task --out DIR [--seed 0]

Why it is a fair test of the miniature CLIP: every class is a mark on wallpaper, and exactly
these combinations (scene.HELD_OUT_MARKS on scene.HELD_OUT_MATERIAL) never occur in pretraining,
so zero-shot has to compose words it learned elsewhere ("tear" on fabric, "wallpaper" with
holes). The training split is imbalanced like real defect data (30:1, seam_gap has 8 images);
validation is balanced so macro F1 is stable; the shifted split paints the same marks on other
materials, in other colours and in poor light, to measure out-of-distribution accuracy.

Writes DIR/{train,val,shifted}/<class>/<class>_<i>.jpg and, last, DIR/.complete; a finished set
with the same seed and counts is reused as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from clipcls.data.demo import jpeg_bytes
from clipcls.io import atomic_write_bytes
from clipcls.world.render import render_scene
from clipcls.world.scene import Scene, draw_mark, draw_scene

# Class -> the mark kind it shows on wallpaper ("none" for clean).
TASK_KINDS: dict[str, str] = {
    "clean": "none",
    "mould": "cluster",
    "tear": "tear",
    "seam_gap": "seam",
    "stain": "stain",
    "bubble": "bubble",
    "scratch": "scratch",
}
SPLIT_COUNTS: dict[str, dict[str, int]] = {
    "train": {"clean": 240, "mould": 100, "tear": 24, "seam_gap": 8, "stain": 80, "bubble": 40, "scratch": 60},
    "val": {name: 30 for name in TASK_KINDS},
    "shifted": {name: 30 for name in TASK_KINDS},
}
# In distribution: pale wallpaper in good light. Shifted: other materials, colours and light.
_LOOKS: dict[str, dict[str, tuple[str, ...]]] = {
    "in": {
        "materials": ("wallpaper",),
        "colours": ("white", "yellow", "pink", "blue", "green", "grey"),
        "lightings": ("even", "bright"),
    },
    "shifted": {
        "materials": ("painted wall", "fabric", "tile", "concrete"),
        "colours": ("red", "purple", "brown", "orange", "blue"),
        "lightings": ("dim", "uneven"),
    },
}
TASK_VERSION = 1  # bump whenever the world's painting or this file's scenes change
MARKER_NAME = ".complete"
JPEG_QUALITY = 92


def task_scene(class_name: str, split: str, seed: int, index: int) -> Scene:
    """Scene `index` of `class_name` in `split`; its own generator, so sets are prefix-stable."""
    class_index, split_index = list(TASK_KINDS).index(class_name), list(SPLIT_COUNTS).index(split)
    rng = np.random.default_rng([seed, split_index, class_index, index, 9])
    look = _LOOKS["shifted" if split == "shifted" else "in"]
    kind = TASK_KINDS[class_name]
    scene = draw_scene(rng, int(rng.integers(2**31)), look["materials"], (kind,), look["colours"], look["lightings"])
    if class_name == "mould":  # dense dark green or black specks, as mould grows
        mark = draw_mark(rng, "cluster")
        colour = "green" if rng.random() < 0.6 else "black"
        scene = dataclasses.replace(scene, mark=dataclasses.replace(mark, colour=colour, shade="dark", density="dense"))
    elif class_name == "stain":  # water and nicotine stains are brown to yellow
        colour = str(rng.choice(["brown", "yellow", "orange"]))
        scene = dataclasses.replace(scene, mark=dataclasses.replace(scene.mark, colour=colour))
    return scene


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """A rendered scene as the task's JPEG bytes (the demo set's encoder, the task's quality)."""
    return jpeg_bytes(Image.fromarray(pixels, mode="RGB"), JPEG_QUALITY)


def _record(seed: int) -> dict[str, object]:
    return {"version": TASK_VERSION, "seed": seed, "counts": SPLIT_COUNTS}


def is_complete(root: Path, seed: int) -> bool:
    """True when a finished set with this seed and these counts is on disk."""
    try:
        if json.loads((root / MARKER_NAME).read_text()) != _record(seed):
            return False
    except (OSError, ValueError):
        return False
    return all(
        len(list((root / split / name).glob("*.jpg"))) == count
        for split, counts in SPLIT_COUNTS.items()
        for name, count in counts.items()
    )


def make_task(root: str | os.PathLike, seed: int = 0) -> Path:
    """Write the three splits under `root` (or reuse a complete set) and return `root`."""
    root = Path(root)
    if is_complete(root, seed):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).unlink(missing_ok=True)
    for split, counts in SPLIT_COUNTS.items():
        for name, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*"):  # files from another seed's or version's counts
                stale.unlink()
            for i in range(count):
                pixels = render_scene(task_scene(name, split, seed, i))
                atomic_write_bytes(
                    encode_jpeg(pixels),
                    folder / f"{name}_{i}.jpg",
                    fsync=False,
                )
    atomic_write_bytes(json.dumps(_record(seed), indent=1).encode(), root / MARKER_NAME)
    return root


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m clipcls.world.task", description="Write the held-out wallpaper-defect task."
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
