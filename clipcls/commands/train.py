"""`clipcls train` and `python train.py`: resolve the config (CFG <- --config files <- flags) and
run training. torch and Lightning are imported only once the config is valid, so `--help`,
`--print_config` and config errors answer in a fraction of a second."""

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

    def run() -> int:
        cfg = parse_config(cfg_class, argv, prog)  # before torch is imported: --help stays instant
        from clipcls.training.run import train

        return train(cfg)

    return exit_status(run)
