"""`clipcls evaluate`: score a trained model on a labelled folder three ways (head, text,
ensemble) and write metrics.json, confusion matrices (PNG + CSV), predictions.csv and report.html.

Class order always comes from the model: the folder is indexed against the model's class list.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

from clipcls.commands.common import add_decision_args, add_loader_args, add_scorer_arg, decision_options, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipcls evaluate",
        description="Score a trained model (checkpoint, run directory or export) on a labelled class-folder "
        "tree with the head, the descriptions (text) and their ensemble.",
    )
    parser.add_argument("model", help="a .ckpt file, a run directory or an export directory")
    parser.add_argument("--data", help="class-folder tree to score (default: the run's validation split)")
    parser.add_argument("--out", help="output directory (default: <run dir>/eval, else ./eval)")
    add_loader_args(parser)
    add_scorer_arg(parser, "scorer whose confusion and mistakes lead the report (default head)")
    add_decision_args(parser)  # how the model's calibration and decision rules fare on this data
    parser.add_argument(
        "--wise-alpha",
        type=float,
        nargs="+",
        metavar="A",
        help="also score WiSE-FT interpolations at these alphas (0 = original CLIP, 1 = fine-tune)",
    )
    return parser


def evaluate(args: argparse.Namespace) -> int:
    """Score the model three ways, optionally sweep WiSE-FT, write the evaluation and print it."""
    from clipcls.data.index import index_folder
    from clipcls.evaluation.evaluation import (
        eval_loader,
        evaluate_classifier,
        format_table,
        run_dir_of,
        summary,
        validation_index,
        warn_problems,
        wise_section,
        wise_sweep,
        write_evaluation,
    )
    from clipcls.inference.scoring import default_scorer, pick_device, scorer_probabilities
    from clipcls.inference.trained_model import load_trained
    from clipcls.model.wise import check_alpha
    from clipcls.output_guard import check_output

    for alpha in args.wise_alpha or ():
        check_alpha(alpha)  # before the (slow) model load

    started = time.perf_counter()
    model_path = Path(args.model)
    if args.out:
        check_output(args.out, model_path, input_folders=[args.data] if args.data else ())
    model = load_trained(model_path)
    run_dir = run_dir_of(model_path)
    if args.data:
        index, data_desc = index_folder(args.data, class_names=model.class_names), str(args.data)
    else:
        index, data_desc = validation_index(model, run_dir)
    device = pick_device(args.device)
    loader = eval_loader(
        index,
        model.image_size,
        model.image_mean,
        model.image_std,
        args.batch_size,
        args.workers,
        device,
        model.config.get("resize", "squash"),  # as the model was trained
    )
    probabilities = functools.partial(scorer_probabilities, text_probability=model.classifier.text_probability)
    ev = evaluate_classifier(model.classifier, index, loader, device, probabilities)
    extra_json, sections = {}, []
    if args.wise_alpha:
        sweep = wise_sweep(model, args.wise_alpha, loader, device)
        extra_json["wise_ft"] = sweep
        sections.append(wise_section(sweep))
    out_dir = Path(args.out) if args.out else (run_dir / "eval" if run_dir else Path("eval"))
    from clipcls.evaluation.decision_report import calibration_report

    out_dir.mkdir(parents=True, exist_ok=True)
    calibration_json, calibration_sections = calibration_report(
        ev, model, out_dir, args.scorer or "head", not args.data, decision_options(args)
    )
    extra_json.update(calibration_json)
    sections += calibration_sections
    curves = run_dir / "logs" / "metrics.csv" if run_dir else None
    info = {"model": str(model.source), "data": data_desc, "device": str(device)}
    write_evaluation(
        ev,
        out_dir,
        f"clipcls evaluation: {model_path.name}",
        info,
        args.scorer or default_scorer(model.config),
        curves_csv=curves,
        extra_json=extra_json,
        extra_sections=sections,
    )
    warn_problems(ev)
    print(format_table({s: summary(m) for s, m in ev.metrics.items()}))
    if args.wise_alpha:
        for scorer in ev.metrics:
            print(
                f"\nWiSE-FT, {scorer}:\n"
                + format_table({a: r[scorer] for a, r in extra_json["wise_ft"].items()}, "alpha")
            )
    print(
        f"\n{len(ev.outputs['targets'])} images in {time.perf_counter() - started:.1f} s; "
        f"metrics.json and report.html in {out_dir}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`clipcls evaluate MODEL [--data DIR] ...`; returns 2 for bad input (the message names it)."""
    return run_command(build_parser(), evaluate, argv)
