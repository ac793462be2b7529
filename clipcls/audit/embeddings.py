"""The audit's model and image embeddings: computed once, in batches, into a file beside the output.

The embeddings go straight from each batch into a memory-mapped .npy file, so memory stays flat in
the number of images; a second audit of the same files with the same model reads the file back
instead of running the model again. The cache key is the model, the input size and every file's
path, size and modification time: any change recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.io import write_json

CACHE_NAME = "embeddings.npy"
CACHE_KEY = "embeddings.json"


@dataclass
class AuditModel:
    """A classifier to embed with, the name it was given and the input size to feed it."""

    classifier: Any  # ClipClassifier
    name: str
    image_size: tuple[int, int]
    trained: bool  # a fine-tuned run (its descriptions and size) rather than a base model


def load_audit_model(name_or_run: str, class_names: list[str], descriptions: dict[str, list[str]]) -> AuditModel:
    """A fine-tuned run, checkpoint or export (`clipcls.inference.trained_model`), else a base CLIP
    by Hub name, directory, "tiny" or "mini", built as zero-shot with `descriptions`."""
    from clipcls.evaluation.zeroshot import build_zeroshot
    from clipcls.inference.trained_model import is_export_dir, load_trained

    path = Path(name_or_run)
    is_run = path.is_file() or (path.is_dir() and ((path / "checkpoints").is_dir() or is_export_dir(path)))
    if is_run:
        trained = load_trained(path)
        return AuditModel(trained.classifier.eval(), str(path), tuple(trained.image_size), True)
    classifier = build_zeroshot(name_or_run, class_names, descriptions)
    native = int(classifier.clip.config.vision_config.image_size)
    return AuditModel(classifier, name_or_run, (native, native), False)


def cache_key(model: AuditModel, paths) -> str:
    """A digest of the model, input size and every file's path, size and modification time."""
    digest = hashlib.sha256(f"{model.name}|{model.image_size}".encode())
    for i in range(len(paths)):
        try:
            st = os.stat(paths[i])
            digest.update(f"{paths[i]}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{paths[i]}|missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def embed_images(
    model: AuditModel,
    paths,  # a clipcls.data.index.PathTable
    readable: np.ndarray,
    cache_dir: Path,
    batch_size: int,
    workers: int | None,
    device,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(embeddings (M, dim) float32 memmap, row_of (N,) int64 with -1 where not embedded, reused).

    Only files the file pass could read are fed to the model; any the loader still cannot read
    get row -1. `progress(n)` is called after each batch with its image count.
    """
    import torch

    from clipcls.data.loaders import inference_loader

    key = cache_key(model, paths)
    npy, meta = cache_dir / CACHE_NAME, cache_dir / CACHE_KEY
    if npy.is_file() and meta.is_file():
        stored = json.loads(meta.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return np.load(npy, mmap_mode="r"), np.asarray(stored["row_of"], np.int64), True
    todo = np.flatnonzero(readable)
    row_of = np.full(len(paths), -1, np.int64)
    dim = int(model.classifier.adapter.embed_dim(model.classifier.clip))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{CACHE_NAME}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(todo), dim))
    classifier = model.classifier.eval().to(device)
    loader = inference_loader(
        paths.take(todo),
        None,
        model.image_size,
        classifier.image_mean,
        classifier.image_std,
        batch_size,
        workers,
        device,
    )
    done = 0
    with torch.inference_mode():
        for batch in loader:
            if batch.pixels is not None:
                emb = classifier.encode_images(batch.pixels.to(device)).float().cpu().numpy()
                positions = batch.positions.numpy()
                rows = np.arange(done, done + len(positions))
                out[rows] = emb
                row_of[todo[positions]] = rows
                done += len(positions)
            if progress is not None:
                progress(len(batch.failures) + (0 if batch.pixels is None else len(batch.pixels)))
    out.flush()
    del out
    meta.unlink(missing_ok=True)  # a crash between the two writes must not pair an old key with new rows
    os.replace(tmp, npy)
    write_json({"key": key, "model": model.name, "row_of": row_of.tolist()}, meta)
    return np.load(npy, mmap_mode="r"), row_of, False
