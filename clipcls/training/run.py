"""A training run: its directory (checked before anything slow), the fit, and its final report."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clipcls.config import save_config
from clipcls.errors import ClipclsError
from clipcls.inference.checkpoint import CheckpointError, load_checkpoint_file
from clipcls.io import remove_stale_temps

log = logging.getLogger("clipcls")
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a terminated process


class RunDirError(ClipclsError, OSError):
    """The run directory cannot be used (exists, unwritable, no space), naming it."""


def _latest_run_with_checkpoint(output_dir: Path) -> Path:
    runs = (
        [d for d in output_dir.glob("*/") if (d / "checkpoints" / "last.ckpt").exists()] if output_dir.is_dir() else []
    )
    if not runs:
        raise CheckpointError(f"--resume last: no run with checkpoints/last.ckpt under {output_dir}")
    return max(runs, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime)


def resolve_run(cfg: dict[str, Any]) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (None for a fresh run)."""
    output = Path(cfg["output_dir"])
    resume = cfg["resume"]
    if resume is None:
        name = cfg["run_name"] or time.strftime("%Y%m%d-%H%M%S")
        run_dir = output / name
        if (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").iterdir()):
            raise RunDirError(
                f"run directory {run_dir} already holds checkpoints: pass --resume last to continue it, "
                "or choose another run_name"
            )
        return run_dir, None
    if resume == "last":
        run_dir = output / cfg["run_name"] if cfg["run_name"] else _latest_run_with_checkpoint(output)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
    elif Path(resume).is_dir():
        run_dir, ckpt = Path(resume), Path(resume) / "checkpoints" / "last.ckpt"
    else:
        ckpt = Path(resume)
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else output / time.strftime("%Y%m%d-%H%M%S")
    return run_dir, ckpt


def read_resume_checkpoint(ckpt: Path) -> dict[str, Any]:
    """The checkpoint to resume from, memory-mapped (cheap for large files), or an error naming
    it. A broken last.ckpt never turns into a silent fresh start, and no older checkpoint is
    silently substituted either: the error names a loadable best checkpoint to pass instead."""
    try:
        return load_checkpoint_file(ckpt, mmap=True)
    except CheckpointError as err:
        raise CheckpointError(f"{err}\nnot resuming and not starting from scratch{_best_hint(ckpt)}") from err


def _best_hint(ckpt: Path) -> str:
    for best in sorted(ckpt.parent.glob("best-*.ckpt"), reverse=True):
        try:
            load_checkpoint_file(best, mmap=True)
        except CheckpointError:
            continue
        return f"; the run's best checkpoint loads: continue from it with --resume {best}"
    return ""


def _existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(run_dir: Path) -> None:
    """Fail before anything is loaded when the run directory cannot be created or written.

    Probes the run directory, or the nearest parent that exists, with a temporary file that
    deletes itself: a real write, so it also catches read-only mounts and root-squashed
    shares that permission bits (`os.access`) report as writable. Creates nothing.
    """
    base = _existing_ancestor(run_dir)
    try:
        if not base.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)}: {base}")
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise RunDirError(f"cannot write to run directory {run_dir}: {err.strerror or err}") from err


def check_free_space(run_dir: Path, needed_bytes: int) -> None:
    """Fail before training when the disk cannot take the checkpoints."""
    free = shutil.disk_usage(_existing_ancestor(run_dir)).free
    if free < needed_bytes:
        raise RunDirError(
            f"not enough disk space in {run_dir}: {free / 2**20:.0f} MiB free, "
            f"checkpoints need about {needed_bytes / 2**20:.0f} MiB"
        )


def checkpoint_bytes(module) -> int:
    """Room for two checkpoints (best + last) with AdamW's two moments, plus a temporary copy."""
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    return 3 * 3 * params


def train(cfg: dict[str, Any]) -> int:
    """Fit a model as `cfg` says and write its run directory; returns the exit status."""
    import pytorch_lightning as pl

    from clipcls.data.splits import load_splits
    from clipcls.training.datamodule import ClipDataModule
    from clipcls.training.interrupt import stop_on_sigint
    from clipcls.training.module import TrainingDiverged, build_module
    from clipcls.training.preflight import check_accelerator, check_model_name
    from clipcls.training.trainer import build_trainer

    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    run_dir, ckpt = resolve_run(cfg)
    check_model_name(cfg["model_name"])  # one-line errors, before the data is indexed
    check_accelerator(cfg["accelerator"])
    # checked before anything slow is loaded; only the class names are kept
    resumed_classes = read_resume_checkpoint(ckpt).get("clipcls", {}).get("class_names") if ckpt else None
    check_writable(run_dir)
    removed = remove_stale_temps(run_dir / "checkpoints")
    if removed:
        log.info("removed %d partial checkpoint file(s) left by an interrupted save", len(removed))
    data = load_splits(cfg)
    if ckpt is not None and resumed_classes != data.class_names:
        raise CheckpointError(f"{ckpt} was trained on classes {resumed_classes}, but the data has {data.class_names}")
    module = build_module(cfg, data.class_names, data.descriptions, data.train.counts().tolist())
    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    check_free_space(run_dir, checkpoint_bytes(module))
    trainer = build_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        trainer.callbacks.append(save_base_model(module.model, run_dir))
        _log_data(data)
    try:
        with stop_on_sigint(trainer) as interrupt:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except pl.utilities.exceptions.SIGTERMException:
        return _stopped_early(run_dir / "checkpoints" / "last.ckpt", interrupt.received)
    except TrainingDiverged as err:
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = f"{last} holds the state from before" if last.exists() else "no checkpoint was saved before it"
        raise TrainingDiverged(f"{err}; {kept}") from None
    if trainer.is_global_zero:
        metrics = finalize_run(trainer, module, datamodule, run_dir)
        print(f"\nrun directory: {run_dir}")
        print(
            f"validation ({metrics['num_images']} images): accuracy {metrics['accuracy']:.4f}  "
            f"macro F1 {metrics['macro_f1']:.4f}  weighted F1 {metrics['weighted_f1']:.4f}"
        )
    return 0


def save_base_model(classifier, run_dir: Path):  # -> BaseModelFiles callback
    """Make the run self-contained: the base model's config, tokenizer and image processor go to
    `run_dir/base_model/` (and, through the returned callback, into every checkpoint), so evaluate,
    predict and export rebuild the model from the run alone; the weights come from the checkpoint."""
    from clipcls.model.loading import BASE_MODEL_DIR, read_base_files, save_base_files
    from clipcls.training.callbacks import BaseModelFiles

    directory = save_base_files(
        classifier.clip, classifier.tokenizer, classifier.image_processor, run_dir / BASE_MODEL_DIR
    )
    return BaseModelFiles(read_base_files(directory))


def _stopped_early(last: Path, by_ctrl_c: bool) -> int:
    """Say where the stopped run was saved and how to go on; the exit status of the signal."""
    from clipcls.training.interrupt import SIGINT_EXIT

    if by_ctrl_c:
        print(f"interrupted: checkpoint saved in {last}; resume with: python train.py --resume last", file=sys.stderr)
        return SIGINT_EXIT
    print(f"terminated: checkpoint saved in {last}; continue with --resume last", file=sys.stderr)
    return SIGTERM_EXIT


def _log_data(data) -> None:
    counts = dict(zip(data.class_names, data.train.counts().tolist()))
    log.info(
        "%d classes, %d training and %d validation images; per class: %s",
        len(data.class_names),
        len(data.train.labels),
        len(data.val.labels),
        counts,
    )


def finalize_run(trainer, module, datamodule, run_dir: Path) -> dict[str, Any]:
    """Score the best checkpoint on the whole validation split; write metrics.json and the
    confusion-matrix PNG. Runs on global rank 0 only."""
    from clipcls.evaluation.metrics import classification_metrics
    from clipcls.evaluation.plots import plot_confusion
    from clipcls.inference.scoring import run_inference
    from clipcls.io import write_json
    from clipcls.training.trainer import best_checkpoint

    best = best_checkpoint(trainer)
    if best is not None:
        module.load_state_dict(load_checkpoint_file(best)["state_dict"])
    outputs = run_inference(module.model, datamodule.val_dataloader(shard=False), module.device)
    preds = outputs[f"{module.scorer}_logits"].argmax(1)  # the scorer validation chose the checkpoint on
    metrics = classification_metrics(outputs["targets"], preds, module.class_names)
    calibration = calibrate(module, outputs, best)
    metrics = {
        "checkpoint": str(best) if best else None,
        "epochs_trained": trainer.current_epoch,
        "global_step": trainer.global_step,
        "class_names": module.class_names,
        **metrics,
        "calibration": {k: v for k, v in calibration.items() if k != "validation"},
    }
    write_json(metrics, run_dir / "metrics.json")
    plot_confusion(
        metrics["confusion_matrix"],
        module.class_names,
        run_dir / "confusion_matrix.png",
        title=f"Validation confusion (macro F1 {metrics['macro_f1']:.3f})",
    )
    return metrics


def calibrate(module, outputs: dict[str, Any], checkpoint: Path | None) -> dict[str, Any]:
    """Fit the temperature of every scorer on the validation outputs and store the record in
    the scored checkpoint (`clipcls.calibration`), so predict, serve and exports apply it."""
    from clipcls.inference.calibration import fit_calibration
    from clipcls.inference.checkpoint import save_checkpoint_file
    from clipcls.inference.scoring import scorer_probabilities

    text_probability = module.model.text_probability
    raw = scorer_probabilities(outputs, text_probability=text_probability)
    record = fit_calibration(raw, outputs["targets"], module.class_names, text_probability)
    if checkpoint is not None:
        ckpt = load_checkpoint_file(checkpoint)
        ckpt.setdefault("clipcls", {})["calibration"] = record
        save_checkpoint_file(ckpt, checkpoint)
    return record
