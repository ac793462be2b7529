"""Training entry point: resolve the config, prepare data, fit, and write the run directory."""
from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from clipcls.checkpoint import CheckpointError, load_checkpoint_file
from clipcls.config import parse_config, save_config
from clipcls.errors import ClipclsError

log = logging.getLogger("clipcls")
SIGTERM_EXIT = 143  # 128 + SIGTERM, what a shell reports for a terminated process


def main(argv: list[str] | None = None, cfg_class: type | None = None) -> int:
    """`python train.py [flags]`: returns the process exit status (2 for bad input)."""
    if cfg_class is None:
        raise TypeError("main() needs the CFG class (train.py passes cfg.CFG)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return train(parse_config(cfg_class, argv))
    except ClipclsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


class RunDirError(ClipclsError, OSError):
    """The run directory cannot be used (exists, unwritable, no space), naming it."""


def _latest_run_with_checkpoint(output_dir: Path) -> Path:
    runs = [d for d in output_dir.glob("*/") if (d / "checkpoints" / "last.ckpt").exists()] if output_dir.is_dir() else []
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
    load_checkpoint_file(ckpt)  # fail now, naming the file, rather than silently starting fresh
    return run_dir, ckpt


def check_writable(run_dir: Path, needed_bytes: int) -> None:
    """Fail before training when the run directory cannot take the checkpoints."""
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write to run directory {run_dir}: {err.strerror or err}") from err
    free = shutil.disk_usage(run_dir).free
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
    import pytorch_lightning as pl

    from clipcls.data.datamodule import ClipDataModule, prepare_data
    from clipcls.module import ClipClassifierModule
    from clipcls.trainer import build_trainer, finalize_run

    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    run_dir, ckpt = resolve_run(cfg)
    data = prepare_data(cfg)
    if ckpt is not None:
        saved = load_checkpoint_file(ckpt).get("clipcls", {}).get("class_names")
        if saved != data.class_names:
            raise CheckpointError(f"{ckpt} was trained on classes {saved}, but the data has {data.class_names}")
    module = ClipClassifierModule(cfg, data.class_names, data.descriptions)
    datamodule = ClipDataModule(data, cfg, module.image_mean, module.image_std)
    check_writable(run_dir, checkpoint_bytes(module))
    trainer = build_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        save_config(cfg, run_dir / "config.yaml")
        _log_data(data)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    except pl.utilities.exceptions.SIGTERMException:
        print(f"terminated: checkpoint saved in {run_dir / 'checkpoints' / 'last.ckpt'}; "
              "continue with --resume last", file=sys.stderr)
        return SIGTERM_EXIT
    if trainer.is_global_zero:
        metrics = finalize_run(trainer, module, datamodule, run_dir)
        print(f"\nrun directory: {run_dir}")
        print(f"validation ({metrics['num_images']} images): accuracy {metrics['accuracy']:.4f}  "
              f"macro F1 {metrics['macro_f1']:.4f}  weighted F1 {metrics['weighted_f1']:.4f}")
    return 0


def _log_data(data) -> None:
    counts = dict(zip(data.class_names, data.train.counts().tolist()))
    log.info("%d classes, %d training and %d validation images; per class: %s",
             len(data.class_names), len(data.train.labels), len(data.val.labels), counts)
