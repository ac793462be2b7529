"""Resolve a run's configuration: CFG defaults <- `--config file.yaml` <- command-line flags."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import yaml

from clipcls.errors import ClipclsError

log = logging.getLogger("clipcls.config")


class ConfigError(ClipclsError, ValueError):
    """A bad configuration value, naming the key."""


def build_parser(cfg_class: type, prog: str = "train.py"):
    """A jsonargparse parser whose options are CFG's fields, typed and defaulted from CFG."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog=prog,
        description="Fine-tune CLIP on class folders with class descriptions.",
        default_env=False,
        exit_on_error=True,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of CFG overrides")
    parser.add_class_arguments(cfg_class, as_group=False)
    return parser


def parse_config(cfg_class: type, argv: list[str] | None, prog: str = "train.py") -> dict[str, Any]:
    """CFG as edited, overridden by `--config` files and flags, validated; a plain dict."""
    from clipcls.config_yaml import check_config_file, config_files

    for path in config_files(argv):  # what jsonargparse's YAML loading lets through
        check_config_file(path)
    parser = build_parser(cfg_class, prog)
    namespace = parser.parse_args(argv)
    values = {f.name: namespace[f.name] for f in dataclasses.fields(cfg_class)}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    validate(values)
    warn_suspicious(values)
    return absolute_paths(values)


_PATH_KEYS = ("train_dataset_dir", "val_dataset_dir", "class_description_yaml_file", "output_dir")


def absolute_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """Resolve file-system paths, so a run's saved config works from any directory."""
    out = dict(cfg)
    for key in _PATH_KEYS:
        if out[key]:
            out[key] = str(Path(out[key]).expanduser().resolve())
    if Path(out["model_name"]).is_dir():  # a local checkpoint; Hub names and "tiny" stay names
        out["model_name"] = str(Path(out["model_name"]).resolve())
    if out["resume"] not in (None, "last"):
        out["resume"] = str(Path(out["resume"]).expanduser().resolve())
    return out


_POSITIVE = (
    "batch_size",
    "epochs",
    "img_transform_size_W",
    "img_transform_size_H",
    "accumulate_grad_batches",
    "num_nodes",
)


def validate(cfg: dict[str, Any]) -> None:
    """Range checks that types alone cannot express; each error names its key."""
    for key in _POSITIVE:
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]!r}")
    checks = {
        "test_size": 0 < cfg["test_size"] < 1,
        "lr": cfg["lr"] > 0,
        "head_lr_multiplier": cfg["head_lr_multiplier"] > 0,
        "resize": not (cfg.get("resize") == "crop" and cfg.get("decode") == "gpu"),  # the decoder squashes
        "label_smoothing": 0 <= cfg["label_smoothing"] < 1,
        "logit_adjustment": cfg.get("logit_adjustment", 0.0) >= 0,
        "warmup_ratio": 0 <= cfg["warmup_ratio"] < 1,
        "sim_weight": cfg["sim_weight"] >= 0,
        "fc_weight": cfg["fc_weight"] >= 0,
        "optim_weight_decay": cfg["optim_weight_decay"] >= 0,
        "temperature": cfg["temperature"] is None or cfg["temperature"] > 0,
        "num_workers": cfg["num_workers"] is None or cfg["num_workers"] >= 0,
        "optim_betas": all(0 <= b < 1 for b in cfg["optim_betas"]),
        "head_init": not (cfg["head_init"] == "zeroshot" and cfg["head"] != "linear"),
        "lp_epochs": cfg.get("lp_epochs", 0) >= 0,
        "layer_decay": 0 < cfg.get("layer_decay", 1.0) <= 1,
        "l2sp_weight": cfg.get("l2sp_weight", 0.0) >= 0,
        "wise_alpha": cfg.get("wise_alpha") is None or 0 <= cfg["wise_alpha"] <= 1,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"invalid value for {key}: {cfg[key]!r}")
    if cfg["sim_weight"] + cfg["fc_weight"] <= 0:
        raise ConfigError("sim_weight and fc_weight are both 0: nothing to train")
    if cfg.get("logit_adjustment", 0.0) > 0 and cfg["sampler"] != "random":
        raise ConfigError(
            f"logit_adjustment corrects for the class frequencies of shuffled batches, but sampler "
            f"{cfg['sampler']!r} already draws every class equally often: set sampler: random "
            f"(or logit_adjustment: 0)"
        )


def warn_suspicious(cfg: dict[str, Any]) -> None:
    """Values that are valid but almost certainly not what was meant."""
    temperature = cfg.get("temperature")
    if temperature is not None and temperature < 1:
        log.warning(
            "temperature=%g is a multiplier of cosine similarities, not a divisor: CLIP's learned scale "
            "is 100 (1/0.07 = 14.3 at its start); below 1 (or near the seed's 1.07) the softmax over "
            "cosines in [-1, 1] is almost flat. Leave it null to use the checkpoint's scale.",
            temperature,
        )


def save_config(cfg: dict[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (the run directory's `config.yaml`), atomically: a resume
    that dies while rewriting it leaves the previous file, which evaluate and zeroshot read."""
    from clipcls.io import atomic_write_text

    try:
        atomic_write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), path)
    except OSError as err:
        raise ConfigError(
            f"cannot write {path}: {err.strerror or err}; the previous file (if any) is unchanged"
        ) from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a run directory's resolved config back (safe YAML)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
