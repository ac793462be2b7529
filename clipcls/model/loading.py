"""Load a dual encoder (Hub name, local directory, or the built-in tiny model) with the tokenizer,
image processor and family adapter that belong to it, and save or restore the parts of it a run
needs to be rebuilt without the original checkpoint (config, tokenizer, image processor)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipcls.model.adapters import Adapter, adapter_for_config, remote_code_error
from clipcls.model.mini import MINI_NAME, verify_mini
from clipcls.model.tiny import TINY_NAME, tiny_clip_path

BASE_MODEL_DIR = "base_model"  # in a run directory: the base model's config, tokenizer, image processor
BASE_MODEL_KEY = "clipcls_base_model"  # in a checkpoint: the same files, as uint8 tensors by file name


@dataclass
class ClipParts:
    """A dual encoder with the tokenizer, image processor and adapter that belong to it."""

    model: Any  # a transformers model of a supported family (CLIPModel, SiglipModel, ...)
    tokenizer: Any
    image_mean: list[float]
    image_std: list[float]
    image_size: int  # the checkpoint's native input side
    adapter: Adapter | None = None
    processor: Any = None  # the checkpoint's image processor, saved into each run


def resolve_model_path(name_or_path: str) -> str:
    """Map the built-in names to their directories: "tiny" (random, built on demand) and "mini"
    (pretrained, shipped in the package, its weights checked against the recorded sha256); pass
    other names and paths through."""
    if name_or_path == TINY_NAME:
        return str(tiny_clip_path())
    if name_or_path == MINI_NAME:
        return str(verify_mini())
    return name_or_path


def _load_config(source: str):
    """The checkpoint's config, refusing one whose model type exists only as downloaded code."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise remote_code_error(source) from err
        raise


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Skip random initialisation of weights a checkpoint overwrites next (seconds for a ViT-B)."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:  # pragma: no cover - transformers 4
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield


def load_clip(name_or_path: str, weights: bool = True) -> ClipParts:
    """Load model, tokenizer and image processor from one source, via the Auto classes and never
    with `trust_remote_code`. `weights=False` builds the architecture from the config only, for
    callers that load a checkpoint's weights next."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar clutters every command
    source = resolve_model_path(name_or_path)
    config = _load_config(source)
    adapter = adapter_for_config(config, str(name_or_path))
    if weights:
        # float32 whatever the checkpoint stores (transformers 5 loads dtype="auto"): an fp16 or
        # bf16 checkpoint would train in half precision, where AdamW updates of 1e-5 vanish;
        # `precision` (autocast) decides what runs in half precision
        model = AutoModel.from_pretrained(
            source, config=config, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=False
        )
    else:
        with _skip_init():
            model = AutoModel.from_config(
                config, dtype=torch.float32, attn_implementation="sdpa", trust_remote_code=False
            )
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False)
    return ClipParts(
        model=model,
        tokenizer=tokenizer,
        image_mean=[float(x) for x in processor.image_mean],
        image_std=[float(x) for x in processor.image_std],
        image_size=adapter.native_size(model),
        adapter=adapter,
        processor=processor,
    )


def save_base_files(model, tokenizer, processor, directory: str | os.PathLike) -> Path:
    """Write what rebuilds `model` without its checkpoint: config, tokenizer and image processor
    (`save_pretrained` files; no weights). Written to a temporary directory and renamed."""
    from clipcls.io import atomic_directory

    directory = Path(directory)
    with atomic_directory(directory, overwrite=True) as tmp:
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
    return directory


def read_base_files(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The base files as uint8 tensors by name: plain tensors, so a checkpoint can carry them and
    still load with `torch.load(weights_only=True)`."""
    files = {}
    for path in sorted(Path(directory).iterdir()):
        if path.is_file():
            files[path.name] = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    return files


@contextlib.contextmanager
def materialised_base_files(files: dict[str, torch.Tensor]) -> Iterator[Path]:
    """A temporary directory holding the files a checkpoint carries (see `read_base_files`)."""
    with tempfile.TemporaryDirectory(prefix="clipcls-base-") as tmp:
        for name, data in files.items():
            if Path(name).name != name:  # a path, not a file name: never write outside tmp
                raise ValueError(f"bad base-model file name {name!r} in checkpoint")
            (Path(tmp) / name).write_bytes(data.numpy().tobytes())
        yield Path(tmp)
