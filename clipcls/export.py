"""`clipcls export`: a self-contained HuggingFace-format model directory, and WiSE-FT.

An export holds everything prediction needs and nothing that needs this project's training code:

    config.json, model.safetensors   the CLIP weights (`CLIPModel.save_pretrained`)
    tokenizer files                  `tokenizer.save_pretrained`
    preprocessor_config.json         a CLIPImageProcessor set to the trained input size and
                                     normalisation (resize to H x W, no crop)
    head.safetensors                 the classification head
    clipcls.json                     class names and order, descriptions, image size/mean/std,
                                     head kind, temperature, freeze_text, training config,
                                     WiSE-FT alpha, format version

Plain `transformers.CLIPModel.from_pretrained(dir)` loads it; `clipcls.load(dir)` returns a
Predictor. The directory is written under a temporary name next to OUT and renamed at the end,
so a failed export never leaves a half directory at OUT.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import torch

from clipcls.errors import ClipclsError
from clipcls.trained import EXPORT_FORMAT_VERSION, EXPORT_HEAD, EXPORT_META, TrainedModel

EPILOG = """\
MODEL is a checkpoint (.ckpt), a run directory (its best checkpoint) or an earlier export.

--wise-alpha A exports the WiSE-FT interpolation (Wortsman et al., CVPR 2022)
  weights = (1 - A) * initial + A * fine-tuned
of the CLIP weights and of the head, where "initial" is the base CLIP of the training config
(config model_name, loaded again) and the head training started from. A = 0 is the original
model (with head_init=zeroshot its head reproduces zero-shot CLIP exactly), A = 1 the fine-tune.

Exit status: 0 exported; 2 bad usage, an unreadable model, OUT exists (without --overwrite) or a
write error (nothing is left at OUT).
"""


class ExportError(ClipclsError, OSError):
    """An export that cannot be written or an invalid export option, naming the path or value."""


# --------------------------------------------------------------------------- WiSE-FT
def initial_classifier(model: TrainedModel):  # -> ClipClassifier
    """The classifier training started from: the base CLIP of the config and a head built by
    the same code the LightningModule uses.

    With head_init="zeroshot" this head is the zero-shot head (description embeddings times the
    logit scale), exactly. With head_init="random" it is the random head drawn after seeding
    torch with the config's seed, as `train` does; that equals training's start only when
    nothing else drew random numbers in between (true for the current `train`).
    """
    from clipcls.module import ClipClassifierModule

    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(int(model.config.get("seed", 0)))
        try:
            classifier = ClipClassifierModule(model.config, model.class_names, model.descriptions).model
        except OSError as err:  # the base model is gone or not downloadable
            raise ExportError(f"WiSE-FT needs the initial model {model.config.get('model_name')!r}: {err}") from err
    return classifier.eval()


def check_alpha(alpha: float) -> float:
    """WiSE-FT's alpha as a float in [0, 1] (0 = initial model, 1 = fine-tune)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ExportError(f"--wise-alpha must be between 0 and 1, got {alpha:g}")
    return alpha


def wise_interpolate(model: TrainedModel, alpha: float) -> TrainedModel:
    """WiSE-FT: a new model whose weights are `(1 - alpha) * initial + alpha * fine-tuned`.

    Every floating-point weight of the CLIP (both towers, projections, the logit scale) and of the
    head is interpolated; alpha = 0 gives `initial_classifier(model)` and alpha = 1 the fine-tune,
    exactly (torch.lerp is exact at both ends). The input model is not changed. Interpolating an
    already interpolated model (alpha a) again with b gives alpha a * b, which is recorded.
    """
    alpha = check_alpha(alpha)
    tuned = model.classifier.state_dict()
    device = next(iter(tuned.values())).device
    result = initial_classifier(model).to(device)
    start = result.state_dict()
    if start.keys() != tuned.keys() or any(start[k].shape != tuned[k].shape for k in start):
        raise ExportError(f"the fine-tuned weights of {model.source} do not match their initial model "
                          f"{model.config.get('model_name')!r}: cannot interpolate")
    mixed = {k: torch.lerp(start[k], tuned[k], alpha) if tuned[k].is_floating_point() else tuned[k].clone()
             for k in tuned}
    result.load_state_dict(mixed)
    result.invalidate_text_cache()  # the text tower changed: description embeddings are stale
    previous = 1.0 if model.wise_alpha is None else model.wise_alpha
    return dataclasses.replace(
        model, classifier=result, class_names=list(model.class_names), descriptions=dict(model.descriptions),
        image_size=tuple(model.image_size), image_mean=list(model.image_mean), image_std=list(model.image_std),
        config=dict(model.config), wise_alpha=alpha * previous,
    )


# --------------------------------------------------------------------------- writing
def export_meta(model: TrainedModel) -> dict[str, Any]:
    """The contents of clipcls.json: what prediction needs beyond the HuggingFace files."""
    classifier = model.classifier
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "class_names": list(model.class_names),
        "class_to_idx": {name: i for i, name in enumerate(model.class_names)},
        "descriptions": {name: list(model.descriptions[name]) for name in model.class_names},
        "image_size": [int(x) for x in model.image_size],
        "image_mean": [float(x) for x in model.image_mean],
        "image_std": [float(x) for x in model.image_std],
        "head": {"kind": model.config.get("head", "linear"), "file": EXPORT_HEAD},
        "temperature": classifier.temperature,
        "freeze_text": bool(classifier.freeze_text),
        "wise_alpha": model.wise_alpha,
        "source": str(model.source) if model.source is not None else None,
        "config": model.config,
    }


def image_processor(model: TrainedModel):  # -> CLIPImageProcessor
    """A processor that prepares images like training's evaluation transform: resize the whole
    image to H x W (bilinear, antialiased), no centre crop, the training mean/std."""
    from transformers import CLIPImageProcessor

    height, width = (int(x) for x in model.image_size)
    return CLIPImageProcessor(
        size={"height": height, "width": width}, crop_size={"height": height, "width": width},
        do_center_crop=False, resample=2,  # 2 = PIL bilinear, as torchvision's Resize default
        image_mean=list(model.image_mean), image_std=list(model.image_std),
    )


def write_export(model: TrainedModel, directory: Path) -> None:
    """Write every file of an export into `directory` (which exists and is empty)."""
    from safetensors.torch import save_file

    classifier = model.classifier
    classifier.clip.save_pretrained(directory, safe_serialization=True)
    classifier.tokenizer.save_pretrained(directory)
    image_processor(model).save_pretrained(directory)
    head = {k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()}
    save_file(head, str(directory / EXPORT_HEAD), metadata={"format": "pt"})
    text = json.dumps(export_meta(model), ensure_ascii=False, indent=2)
    (directory / EXPORT_META).write_text(text + "\n", encoding="utf-8")
    _umask_permissions(directory)


def _umask_permissions(directory: Path) -> None:
    """Give every file the permissions the user's umask allows: safetensors creates files
    readable by their owner only, which breaks a model directory shared with others."""
    mask = os.umask(0)
    os.umask(mask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def export_model(model: TrainedModel, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the export to a temporary directory beside `out`, then rename it to `out`.

    Any failure removes the temporary directory, so `out` either does not exist (or keeps its
    old contents) or holds a complete export.
    """
    out = Path(out)
    if out.exists() and not (overwrite and out.is_dir()):
        raise ExportError(f"{out} already exists" + ("" if out.is_dir() else " and is not a directory")
                          + ("; pass --overwrite to replace it" if out.is_dir() else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()  # mkdir, not mkdtemp: ordinary permissions once renamed
    try:
        write_export(model, tmp)
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing target is moved aside first and deleted after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the previous export back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- loading
def load_predictor(path: str | os.PathLike, device: str | torch.device | None = None, scorer: str = "head"):
    """A Predictor (see clipcls.predictor) for an export, a checkpoint or a run directory."""
    from clipcls.predictor import Predictor
    from clipcls.trained import load_trained

    return Predictor(load_trained(path), device=device, scorer=scorer)


# --------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    """The command line of `clipcls export`."""
    parser = argparse.ArgumentParser(
        prog="clipcls export", description="Write a self-contained HuggingFace-format model directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="checkpoint, run directory or export directory")
    parser.add_argument("--out", required=True, type=Path, help="directory to create")
    parser.add_argument("--wise-alpha", type=float, default=None,
                        help="export (1-A)*initial + A*fine-tuned weights (0 = original model, 1 = fine-tune)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls export MODEL --out DIR [--wise-alpha A]`; returns the exit status."""
    from clipcls.trained import load_trained

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), returned rather than raised
        return int(exit_.code or 0)
    try:
        if args.out.exists() and not args.overwrite:  # fail before the (slow) model load
            raise ExportError(f"{args.out} already exists; pass --overwrite to replace it")
        if args.wise_alpha is not None:
            check_alpha(args.wise_alpha)
        model = load_trained(args.model)
        if args.wise_alpha is not None:
            model = wise_interpolate(model, args.wise_alpha)
        out = export_model(model, args.out, overwrite=args.overwrite)
    except (ClipclsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    alpha = "" if model.wise_alpha is None else f" (WiSE-FT alpha {model.wise_alpha:g})"
    print(f"exported {len(model.class_names)} classes{alpha} to {out}", file=sys.stderr)
    return 0
