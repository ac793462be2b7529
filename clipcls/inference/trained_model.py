"""Load a trained model from a checkpoint file, a run directory or an export directory, with
everything training decided about it (class order above all), read back rather than recomputed.

Nothing here imports Lightning or torchmetrics: a checkpoint is a plain weights-only file whose
`state_dict` holds the classifier's weights under the prefix `model.`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipcls.inference.checkpoint import CheckpointError, describe_load_error, load_checkpoint_file
from clipcls.model.classifier import ClipClassifier, build_classifier


@dataclass
class TrainedModel:
    """A ready-to-run classifier and the facts needed to feed it and read its outputs."""

    classifier: ClipClassifier
    class_names: list[str]
    descriptions: dict[str, list[str]]
    image_size: tuple[int, int]  # (H, W) the model was trained at
    image_mean: list[float]
    image_std: list[float]
    config: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    wise_alpha: float | None = None  # WiSE-FT mix of base and fine-tuned weights; None = plain fine-tune
    calibration: dict[str, Any] | None = None  # fitted on validation (clipcls.inference.calibration)

    def interpolated(self, alpha: float) -> TrainedModel:
        """WiSE-FT: a new model with `(1 - alpha) * initial + alpha * fine-tuned` weights (this one
        is not changed). Interpolating an interpolated model (alpha a) with b gives a * b."""
        from clipcls.model.wise import check_alpha, initial_classifier, wise_interpolate

        alpha = check_alpha(alpha)
        start = initial_classifier(self.config, self.class_names, self.descriptions)
        mixed = wise_interpolate(start, self.classifier, alpha)
        previous = 1.0 if self.wise_alpha is None else self.wise_alpha
        return dataclasses.replace(
            self,
            classifier=mixed,
            class_names=list(self.class_names),
            descriptions=dict(self.descriptions),
            config=dict(self.config),
            wise_alpha=alpha * previous,
            calibration=None,  # fitted for the fine-tuned weights, not for a mix
        )


STATE_PREFIX = "model."  # the LightningModule holds the classifier as `self.model`
EXPORT_META = "clipcls.json"  # marks an export directory (see clipcls.export)
EXPORT_HEAD = "head.safetensors"
EXPORT_FORMAT_VERSION = 1


def is_export_dir(path: str | Path) -> bool:
    """True for a directory written by `clipcls export`."""
    return (Path(path) / EXPORT_META).is_file()


def find_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given; for a run directory its best checkpoint, else its last.ckpt.
    (Export directories are recognised by `load_trained` before this is asked.)"""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "clipcls_graph.json").is_file():  # = clipcls.inference.onnx_predictor.GRAPH_META
        raise CheckpointError(
            f"{path} is an ONNX/OpenVINO export: it holds the inference graph only, not the PyTorch weights "
            "this needs; give the run directory, a .ckpt file or a HuggingFace-format export (--format hf)"
        )
    ckpt_dir = path / "checkpoints"
    best = sorted(ckpt_dir.glob("best-*.ckpt"))
    if best:
        return best[-1]
    if (ckpt_dir / "last.ckpt").is_file():
        return ckpt_dir / "last.ckpt"
    raise CheckpointError(
        f"no checkpoint found at {path} (expected a .ckpt file, a run directory or an export directory)"
    )


def load_trained(path: str | Path, map_location: str = "cpu") -> TrainedModel:
    """Rebuild the classifier from a checkpoint (weights-only load), a run directory or an export
    directory, and put it in eval mode."""
    if is_export_dir(path):
        return to_device(load_export(path), map_location)
    ckpt_path = find_checkpoint(path)
    ckpt = load_checkpoint_file(ckpt_path, map_location)
    try:
        hparams, meta = ckpt["hyper_parameters"], ckpt["clipcls"]
    except KeyError as err:
        raise CheckpointError(f"{ckpt_path} is not a clipcls checkpoint (missing {err})") from err
    with base_model_source(ckpt_path, ckpt) as source:
        classifier = build_classifier(
            hparams["config"],
            meta["class_names"],
            meta["descriptions"],
            model_source=source,
            base_weights=source is None,
        )
    state = {k[len(STATE_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(STATE_PREFIX)}
    try:
        classifier.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{ckpt_path}: its weights do not fit {hparams['config']['model_name']!r}: {str(err).splitlines()[0]}"
        ) from err
    model = _trained(classifier, meta, hparams["config"], ckpt_path)
    alpha = hparams["config"].get("wise_alpha")  # WiSE-FT as the run's config asks: applied on loading
    return model if alpha is None else model.interpolated(alpha)


@contextlib.contextmanager
def base_model_source(ckpt_path: Path, ckpt: dict[str, Any]) -> Iterator[str | None]:
    """Where to read the base model's config, tokenizer and image processor for a checkpoint: its
    run's `base_model/` directory, else the copy the checkpoint carries (a temporary directory),
    else None: a checkpoint from before runs were self-contained, rebuilt from its `model_name`."""
    from clipcls.model.loading import BASE_MODEL_DIR, BASE_MODEL_KEY, materialised_base_files

    run_base = ckpt_path.parent.parent / BASE_MODEL_DIR
    if ckpt_path.parent.name == "checkpoints" and (run_base / "config.json").is_file():
        yield str(run_base.resolve())
    elif ckpt.get(BASE_MODEL_KEY):
        with materialised_base_files(ckpt[BASE_MODEL_KEY]) as directory:
            yield str(directory)
    else:
        yield None


def read_export_meta(directory: str | Path) -> dict[str, Any]:
    """The export's `clipcls.json`, checked for a format version this code can read."""
    meta_path = Path(directory) / EXPORT_META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {meta_path}: {err}") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != EXPORT_FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: unsupported export format version {version!r} "
            f"(this clipcls reads version {EXPORT_FORMAT_VERSION})"
        )
    return meta


def load_export(directory: str | Path) -> TrainedModel:
    """Rebuild the classifier from an export: its CLIP is loaded exactly like a Hub checkpoint
    (`load_clip` on the directory, no network), then the head weights are put back."""
    from safetensors.torch import load_file

    from clipcls.model.loading import load_clip

    directory = Path(directory).resolve()  # an absolute path: never mistaken for a built-in name
    meta = read_export_meta(directory)
    try:
        parts = load_clip(str(directory))
        head_state = load_file(directory / EXPORT_HEAD)
    except Exception as err:  # transformers and safetensors raise OSError, ValueError, ...
        raise CheckpointError(f"cannot load export {directory}: {describe_load_error(err)}") from err
    classifier = ClipClassifier(
        parts.model,
        parts.tokenizer,
        meta["class_names"],
        meta["descriptions"],
        head=meta["head"]["kind"],
        head_init="random",  # random: overwritten by the saved head next
        freeze_text=meta["freeze_text"],
        temperature=meta["temperature"],
        image_mean=meta["image_mean"],
        image_std=meta["image_std"],
        adapter=parts.adapter,
        contrastive_loss=meta.get("config", {}).get("contrastive_loss", "auto"),
    )
    try:
        classifier.head.load_state_dict(head_state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{directory / EXPORT_HEAD} does not fit the {meta['head']['kind']} head "
            f"for {len(meta['class_names'])} classes: {err}"
        ) from err
    return _trained(classifier, meta, meta["config"], directory, meta.get("wise_alpha"))


def _trained(
    classifier: ClipClassifier,
    meta: dict[str, Any],
    config: dict[str, Any],
    source: Path,
    wise_alpha: float | None = None,
) -> TrainedModel:
    """A TrainedModel in eval mode from the facts a checkpoint or export records (`meta`)."""
    return TrainedModel(
        classifier=classifier.eval(),
        class_names=list(meta["class_names"]),
        descriptions=dict(meta["descriptions"]),
        image_size=tuple(meta["image_size"]),
        image_mean=list(meta["image_mean"]),
        image_std=list(meta["image_std"]),
        config=dict(config),
        source=source,
        wise_alpha=wise_alpha,
        calibration=meta.get("calibration"),
    )


def to_device(model: TrainedModel, device: str | torch.device) -> TrainedModel:
    """Move the classifier to `device` (in place) and return the same model."""
    model.classifier.to(device)
    return model
