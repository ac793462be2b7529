"""`clipcls train` and `python train.py`: resolve the config (CFG <- --config files <- flags) and
run training. torch and Lightning are imported only once the config is valid, so `--help`,
`--print_config` and config errors answer in a fraction of a second. `--audit` (not a CFG key)
first audits the run's data (`clipcls audit`) and refuses to train on a severe finding."""

from __future__ import annotations

import logging

from clipcls.errors import exit_status


def main(argv: list[str] | None = None, cfg_class: type | None = None) -> int:
    """Train with `cfg_class`'s defaults (a checkout's cfg.py passes its CFG; the installed
    command uses clipcls.cfg.CFG, the same file); returns the exit status (2 for bad input)."""
    from clipcls.config import parse_config

    prog = "train.py"
    if cfg_class is None:  # `clipcls train`
        from clipcls.cfg import CFG as cfg_class

        prog = "clipcls train"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv, audit_first = without_audit_flag(argv)

    def run() -> int:
        cfg = parse_config(cfg_class, argv, prog)  # before torch is imported: --help stays instant
        if audit_first:
            status = audit_before_training(cfg)
            if status:
                return status
        from clipcls.training.run import train

        return train(cfg)

    return exit_status(run)


AUDIT_FLAG = "--audit"  # not a CFG key: it says what to do before this run, not how to train


def without_audit_flag(argv: list[str] | None) -> tuple[list[str], bool]:
    """The arguments without `--audit`, and whether it was there."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    return [a for a in argv if a != AUDIT_FLAG], AUDIT_FLAG in argv


def audit_before_training(cfg: dict) -> int:
    """`python train.py --audit`: audit the run's data with its base model into
    <output_dir>/audit (embeddings cached there for the next time); a severe finding (leakage,
    a class without readable images or description, a class too small to split, the same file
    under two labels) stops the run with status 1 before anything is trained."""
    import sys
    from pathlib import Path

    from clipcls.audit.run import AuditInputs
    from clipcls.commands.audit import audit_and_report

    out = Path(cfg["output_dir"]) / "audit"
    inputs = AuditInputs(
        data=cfg["train_dataset_dir"],
        out=out,
        val=cfg["val_dataset_dir"],
        descriptions=cfg["class_description_yaml_file"],
        model=cfg["model_name"],
        test_size=cfg["test_size"],
        batch_size=cfg["batch_size"],
        workers=cfg["num_workers"],
    )
    if audit_and_report(inputs):
        print(
            f"not training: the audit found severe problems (see {out / 'audit.html'}); fix them, or run "
            "without --audit to train anyway",
            file=sys.stderr,
        )
        return 1
    return 0
