"""The built-in pretrained miniature CLIP `mini`, shipped inside the package.

Why it exists: real CLIP weights cannot be downloaded on our machines, and a random CLIP
(`tiny`) makes every zero-shot number chance. `mini` was pretrained on the procedural world
(clipcls/world/pretrain.py, command and figures in mini/PROVENANCE.md), so its zero-shot scores
on the held-out wallpaper task are real and what the descriptions contribute can be measured.
It is a plain `save_pretrained` directory, loaded through transformers like a Hub checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MINI_NAME = "mini"
# sha256 of mini/model.safetensors, as recorded in mini/PROVENANCE.md.
MINI_SHA256 = "e578706b29f36b485c3ecd7853b4bdadfaa72ac482136e56cc2bf7941e85dd14"


def mini_clip_path() -> Path:
    """The packaged directory (config.json, model.safetensors, tokenizer, image processor)."""
    return Path(__file__).with_name("mini")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_mini(path: Path | None = None) -> Path:
    """Return the mini directory after checking its weights are the recorded ones.

    Raises RuntimeError when the weights are missing or differ (a broken install or a
    retrained model without an updated MINI_SHA256), rather than silently using other weights.
    """
    root = mini_clip_path() if path is None else Path(path)
    weights = root / "model.safetensors"
    if not weights.is_file():
        raise RuntimeError(f"built-in model {MINI_NAME!r} is missing its weights: {weights}")
    found = file_sha256(weights)
    if found != MINI_SHA256:
        raise RuntimeError(
            f"built-in model {MINI_NAME!r} has unexpected weights {weights} (sha256 {found}, expected {MINI_SHA256})"
        )
    return root
