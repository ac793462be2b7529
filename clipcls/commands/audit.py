"""`clipcls audit DATA --out DIR`: what is wrong with a labelled image folder before training on it.

Exit status: 0 when nothing at the `--fail-on` level (default: severe) was found, 1 when
something was (the findings are in DIR/audit.html and DIR/audit.json), 2 for a usage error or
input the audit cannot read at all (no such folder, a description file that does not parse).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clipcls.commands.common import add_loader_args, run_command

EXIT_CLEAN, EXIT_FINDINGS = 0, 1


def audit_and_report(inputs, fail_on: str = "severe", title: str | None = None) -> int:
    """Run the audit, write its files, print a summary; the exit status (0 clean, 1 findings)."""
    from clipcls.audit.report import write_audit
    from clipcls.audit.run import run_audit

    started = time.perf_counter()
    audit = run_audit(inputs)
    written = write_audit(audit, inputs.out, title or f"clipcls audit: {inputs.data}")
    levels = ("severe",) if fail_on == "severe" else ("severe", "warning")
    for finding in audit.findings:
        if finding["severity"] in ("severe", "warning"):
            print(f"{finding['severity']}: {finding['check']}: {finding['message']}", file=sys.stderr)
    counts = {s: audit.count(s) for s in ("severe", "warning", "info")}
    print(
        f"{audit.facts.get('images', 0)} images audited in {time.perf_counter() - started:.1f} s: "
        f"{counts['severe']} severe, {counts['warning']} warning, {counts['info']} info finding(s); "
        f"see {written['html']}"
    )
    return EXIT_FINDINGS if any(audit.count(s) for s in levels) else EXIT_CLEAN


def audit_command(args: argparse.Namespace) -> int:
    from clipcls.audit.run import AuditInputs
    from clipcls.output_guard import check_output

    local_model = args.model if args.model and Path(args.model).exists() else None
    check_output(args.out, local_model, input_folders=[f for f in (args.data, args.val) if f])
    inputs = AuditInputs(
        data=args.data,
        out=Path(args.out),
        val=args.val,
        descriptions=args.descriptions,
        model=args.model,
        test_size=args.test_size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=None,
    )
    return audit_and_report(inputs, args.fail_on)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipcls audit",
        description="Find likely label errors, duplicates and train/val leakage, unreadable or odd "
        "files, small classes and weak class descriptions; write audit.html, audit.json and "
        "ranked CSVs to --out. Exit 0: nothing at --fail-on level; 1: findings; 2: usage error.",
    )
    parser.add_argument("data", help="class-folder tree to audit (the training folder)")
    parser.add_argument("--out", required=True, help="output directory (embeddings are cached there too)")
    parser.add_argument("--val", help="a separate validation class-folder tree (checked for leakage too)")
    parser.add_argument("--descriptions", help="class-description YAML (enables the description checks)")
    from clipcls.cfg import CFG  # the one home of the default model

    parser.add_argument(
        "--model",
        default=CFG.model_name,
        help='embedding model: CLIP Hub name, local directory, "mini" (offline, 64 px), "tiny" (random), '
        f"or a run / checkpoint / export directory (default: training's, {CFG.model_name})",
    )
    parser.add_argument(
        "--test-size",
        type=float,
        default=0.2,
        help="without --val: the validation fraction training will split off (default 0.2)",
    )
    parser.add_argument(
        "--fail-on",
        choices=("severe", "warning"),
        default="severe",
        help="the finding level that makes the exit status 1 (default severe)",
    )
    add_loader_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls audit DATA --out DIR [--val DIR] [--descriptions YAML] [--model NAME_OR_RUN]`."""
    parser = build_parser()

    def body(args: argparse.Namespace) -> int:
        if not 0 < args.test_size < 1:
            parser.error(f"--test-size must be between 0 and 1, got {args.test_size}")
        return audit_command(args)

    return run_command(parser, body, argv)
