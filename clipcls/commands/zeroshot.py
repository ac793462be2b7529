"""`clipcls zeroshot`: the baseline every fine-tune must beat, plus a report on the descriptions
(which classes the model confuses, which descriptions embed too close together)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from clipcls.commands.common import add_loader_args, run_command


def resolve_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Model name, descriptions, image index, input size and output dir, from a run and/or flags."""
    from clipcls.config import load_config
    from clipcls.data.descriptions import read_descriptions
    from clipcls.data.index import ImageIndex, index_folder, list_classes
    from clipcls.data.splits import load_splits
    from clipcls.errors import ClipclsError
    from clipcls.evaluation.evaluation import EvaluateError
    from clipcls.evaluation.zeroshot import class_list
    from clipcls.output_guard import check_output

    cfg: dict[str, Any] = {}
    if args.run:
        config_file = Path(args.run) / "config.yaml"
        if not config_file.is_file():
            raise EvaluateError(f"{args.run} is not a run directory (no config.yaml)")
        cfg = load_config(config_file)
    model_name = args.model or cfg.get("model_name")
    if not model_name or not (args.data or cfg) or not (args.descriptions or cfg):
        raise EvaluateError("give a RUN_DIR, or all of --model, --data and --descriptions")
    desc_file = args.descriptions or cfg["class_description_yaml_file"]
    descriptions = read_descriptions(desc_file)
    if args.data:
        folder_classes, data_desc = list_classes(args.data), str(args.data)
        index = index_folder(args.data, class_names=class_list(folder_classes, descriptions, desc_file))
    else:
        try:
            val = load_splits(cfg).val
        except ClipclsError as err:
            raise EvaluateError(f"cannot rebuild the run's validation split ({err}); pass --data DIR") from err
        classes = class_list(val.class_names, descriptions, desc_file)
        index = ImageIndex(val.root, classes, val.paths, val.labels)  # run classes first: labels unchanged
        data_desc = cfg.get("val_dataset_dir") or f"{cfg['train_dataset_dir']} (validation split, seed {cfg['seed']})"
    size = args.size or ([cfg["img_transform_size_H"], cfg["img_transform_size_W"]] if cfg else None)
    out = Path(args.out) if args.out else (Path(args.run) / "zeroshot" if args.run else Path("zeroshot"))
    if args.out:
        local_model = args.model if args.model and Path(args.model).exists() else None
        check_output(out, args.run or local_model, input_folders=[args.data] if args.data else ())
    descriptions = {name: descriptions[name] for name in index.class_names}
    return {
        "model_name": model_name,
        "descriptions": descriptions,
        "descriptions_file": str(desc_file),
        "index": index,
        "data": str(data_desc),
        "size": size,
        "out": out,
    }


def print_description_report(report: dict[str, Any]) -> None:
    print("\nmost confused (true -> predicted: images, description cosine):")
    for c in report["most_confused"][:5] or [
        {"true": "-", "predicted": "-", "count": 0, "description_similarity": 0.0}
    ]:
        print(f"  {c['true']} -> {c['predicted']}: {c['count']}, {c['description_similarity']:.3f}")
    print("most similar descriptions (cosine):")
    for p in report["most_similar"][:5]:
        print(f"  {p['a']} ~ {p['b']}: {p['cosine']:.3f}")


def zeroshot(args: argparse.Namespace) -> int:
    """Score zero-shot CLIP, write the evaluation and the description report, print both."""
    from clipcls.evaluation.evaluation import (
        eval_loader,
        evaluate_classifier,
        format_table,
        summary,
        warn_problems,
        write_evaluation,
    )
    from clipcls.evaluation.plots import plot_similarity
    from clipcls.evaluation.zeroshot import (
        NATIVE,
        SCORER,
        build_zeroshot,
        description_report,
        description_section,
        similarity_matrix,
    )
    from clipcls.inference.scoring import PROBABILITIES, pick_device
    from clipcls.io import write_json

    started = time.perf_counter()
    inputs = resolve_inputs(args)
    index, out = inputs["index"], inputs["out"]
    classifier = build_zeroshot(inputs["model_name"], index.class_names, inputs["descriptions"])
    native = classifier.clip.config.vision_config.image_size
    size = inputs["size"] or [native, native]
    device = pick_device(args.device)
    loader = eval_loader(
        index, size, classifier.image_mean, classifier.image_std, args.batch_size, args.workers, device
    )
    probability = PROBABILITIES[classifier.text_probability]  # softmax, or sigmoid for SigLIP
    ev = evaluate_classifier(classifier, index, loader, device, lambda o: {SCORER: probability(o["text_logits"])})
    # the fair baseline: the checkpoint's own preprocessing (shortest side + centre crop at its
    # native size, as CLIP was pretrained), beside the run's (squashed to the training size)
    native_loader = eval_loader(
        index,
        [native, native],
        classifier.image_mean,
        classifier.image_std,
        args.batch_size,
        args.workers,
        device,
        "crop",
    )
    native_ev = evaluate_classifier(
        classifier, index, native_loader, device, lambda o: {NATIVE: probability(o["text_logits"])}
    )
    ev.metrics[NATIVE], ev.probabilities[NATIVE] = native_ev.metrics[NATIVE], native_ev.probabilities[NATIVE]
    similarity = similarity_matrix(classifier)
    report = description_report(ev, similarity, inputs["descriptions"])
    out.mkdir(parents=True, exist_ok=True)
    write_json({"model": inputs["model_name"], **report}, out / "descriptions.json")
    png = out / "description_similarity.png"
    plot_similarity(similarity, index.class_names, png, "Class description similarity (cosine)")
    info = {
        "model": inputs["model_name"],
        "descriptions_file": inputs["descriptions_file"],
        "data": inputs["data"],
        "image_size": f"{size[0]}x{size[1]} (squashed; {NATIVE}: shortest side + centre crop at {native}x{native})",
        "device": str(device),
    }
    write_evaluation(
        ev,
        out,
        f"clipcls zero-shot: {inputs['model_name']}",
        info,
        SCORER,
        extra_sections=[description_section(report, png)],
    )
    warn_problems(ev)
    print(format_table({name: summary(ev.metrics[name]) for name in (SCORER, NATIVE)}))
    print_description_report(report)
    print(
        f"\n{len(ev.outputs['targets'])} images in {time.perf_counter() - started:.1f} s; "
        f"metrics.json, descriptions.json and report.html in {out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipcls zeroshot",
        description="Score un-fine-tuned CLIP with the class descriptions alone, and report which "
        "descriptions are too alike. Give a run directory (its base model, descriptions and "
        "validation split), or --model, --data and --descriptions; flags override the run's.",
    )
    parser.add_argument("run", nargs="?", help="a training run directory")
    parser.add_argument("--model", help='CLIP Hub name, local directory or "tiny"')
    parser.add_argument("--data", help="class-folder tree to score")
    parser.add_argument("--descriptions", help="class-description YAML")
    parser.add_argument("--out", help="output directory (default: <run dir>/zeroshot, else ./zeroshot)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size (default: the run's, else the model's native size)",
    )
    add_loader_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls zeroshot RUN_DIR` or `clipcls zeroshot --model M --data D --descriptions Y`."""
    return run_command(build_parser(), zeroshot, argv)
