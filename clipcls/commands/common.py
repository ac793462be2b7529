"""What every command shares: the loader and device flags (same names, same defaults everywhere),
the scorer flag, and running a command body under the one exit-status wrapper."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from clipcls.errors import exit_status

SCORERS = ("head", "text", "ensemble")  # = clipcls.inference.scoring.SCORERS (checked by a test)
BATCH_SIZE = 32


def add_loader_args(parser: argparse.ArgumentParser) -> None:
    """--batch-size, --workers and --device, for every command that reads images."""
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"images per batch (default {BATCH_SIZE})")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-loading processes (default: one per CPU up to 8 feeding a GPU; "
        "CPUs // 4 when the CPUs also run the model)",
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1 ... (default auto: the GPU if there is one)"
    )


def add_scorer_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--scorer: head, text (description similarity) or their ensemble; default: the run's own
    (`clipcls.inference.scoring.default_scorer`: text where the head was not trained)."""
    parser.add_argument("--scorer", choices=SCORERS, default=None, help=help_text)


def rate(text: str) -> float:
    """An argparse type: a rate strictly between 0 and 1 (argparse names the flag in its error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate strictly between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a rate strictly between 0 and 1, got {text}")
    return value


def add_decision_args(parser: argparse.ArgumentParser) -> None:
    """--uncalibrated, --max-error, --good-class, --max-escape (clipcls.inference.decisions), for
    predict and serve: the same names, defaults and checks."""
    group = parser.add_argument_group("calibration and decisions (thresholds fitted on the validation split)")
    group.add_argument(
        "--uncalibrated", action="store_true", help="raw probabilities instead of the temperature-scaled ones"
    )
    group.add_argument(
        "--max-error",
        type=rate,
        default=None,
        metavar="RATE",
        help='answer "uncertain" unless the error on auto-decided images stays <= RATE (e.g. 0.02)',
    )
    group.add_argument("--good-class", default=None, metavar="CLASS", help="the class that passes (e.g. clean)")
    group.add_argument(
        "--max-escape",
        type=rate,
        default=None,
        metavar="RATE",
        help="with --good-class: at most this share of defects passes as good (default 0.005)",
    )


def decision_options(args: argparse.Namespace) -> dict:
    """The Predictor / OnnxPredictor keyword arguments of the decision flags."""
    return {
        "calibrated": not args.uncalibrated,
        "max_error": args.max_error,
        "good_class": args.good_class,
        "max_escape": args.max_escape,
    }


def check_loader_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Positive batch size, non-negative workers: a usage error (exit 2) naming the flag."""
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")


def run_command(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    log_level: int = logging.WARNING,
) -> int:
    """Parse `argv` and run `body(args)`; errors become exit statuses (see `exit_status`)."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int | None:
        args = parser.parse_args(argv)
        if hasattr(args, "batch_size"):
            check_loader_args(args, parser)
        return body(args)

    return exit_status(run)
