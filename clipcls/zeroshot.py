"""`clipcls zeroshot`: the baseline every fine-tune must beat, plus a report on the descriptions.

An un-fine-tuned CLIP scores each image by the cosine similarity of its embedding with each
class's (averaged) description embedding. Besides the usual metrics it writes which class
descriptions sit close together and which classes the model confuses, so the user knows which
descriptions to rewrite.
"""
from __future__ import annotations

import argparse
import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from clipcls.errors import ClipclsError, exit_status
from clipcls.evaluate import (EvaluateError, Evaluation, evaluate_classifier, format_table, make_eval_loader,
                              pick_device, summary, warn_problems, write_evaluation)

SCORER = "zeroshot"
TOP_PAIRS = 10  # pairs listed in descriptions.json and the report


def class_list(folder_classes: list[str], descriptions: dict[str, list[str]], source: str) -> list[str]:
    """The folder's classes in order, then classes known only from their description (extra
    candidates the images may be mistaken for). A folder class without description is an error."""
    lacking = [name for name in folder_classes if name not in descriptions]
    if lacking:
        raise EvaluateError(f"{source} has no description for the class folders {lacking}")
    return folder_classes + [name for name in descriptions if name not in folder_classes]


def resolve_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Model name, descriptions, image index, input size and output dir, from a run and/or flags."""
    from clipcls.config import load_config
    from clipcls.data.datamodule import prepare_data
    from clipcls.data.descriptions import read_descriptions
    from clipcls.data.index import ImageIndex, index_folder, list_classes

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
            val = prepare_data(cfg).val
        except ClipclsError as err:
            raise EvaluateError(f"cannot rebuild the run's validation split ({err}); pass --data DIR") from err
        classes = class_list(val.class_names, descriptions, desc_file)
        index = ImageIndex(val.root, classes, val.paths, val.labels)  # run classes first: labels unchanged
        data_desc = cfg.get("val_dataset_dir") or f"{cfg['train_dataset_dir']} (validation split, seed {cfg['seed']})"
    size = args.size or ([cfg["img_transform_size_H"], cfg["img_transform_size_W"]] if cfg else None)
    out = Path(args.out) if args.out else (Path(args.run) / "zeroshot" if args.run else Path("zeroshot"))
    descriptions = {name: descriptions[name] for name in index.class_names}
    return {"model_name": model_name, "descriptions": descriptions, "descriptions_file": str(desc_file),
            "index": index, "data": str(data_desc), "size": size, "out": out}


def build_zeroshot(model_name: str, class_names: list[str], descriptions: dict[str, list[str]]):
    """An un-trained ClipClassifier and the CLIP checkpoint's image size and normalisation."""
    from clipcls.model.classifier import ClipClassifier
    from clipcls.model.loading import load_clip

    try:
        parts = load_clip(model_name)
    except OSError as err:  # transformers' way of saying the name or directory holds no model
        raise EvaluateError(f"cannot load CLIP model {model_name!r}: {err}") from err
    classifier = ClipClassifier(parts.model, parts.tokenizer, class_names, descriptions, head="linear",
                                head_init="random", freeze_text=True)
    return classifier.eval(), parts


def similarity_matrix(classifier) -> np.ndarray:
    """Cosine similarity of the class embeddings (mean of normalised description embeddings)."""
    import torch

    with torch.inference_mode():
        emb = classifier.class_embeddings().double().cpu().numpy()
    return np.clip(emb @ emb.T, -1.0, 1.0)


def most_confused(matrix: np.ndarray, similarity: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Off-diagonal confusion cells, largest count first: (true -> predicted) pairs."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1)
    cells = [(int(matrix[i, j]), i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j and matrix[i, j]]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": class_names[i], "predicted": class_names[j], "count": count,
             "share_of_true": count / rows[i], "description_similarity": float(similarity[i, j])}
            for count, i, j in cells[:TOP_PAIRS]]


def most_similar(similarity: np.ndarray, class_names: list[str]) -> list[dict[str, Any]]:
    """Distinct class pairs whose descriptions embed closest together."""
    pairs = [(float(similarity[i, j]), i, j) for i in range(len(class_names)) for j in range(i + 1, len(class_names))]
    pairs.sort(key=lambda p: -p[0])
    return [{"a": class_names[i], "b": class_names[j], "cosine": value} for value, i, j in pairs[:TOP_PAIRS]]


def description_report(ev: Evaluation, similarity: np.ndarray, descriptions: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "class_names": ev.class_names,
        "descriptions": descriptions,
        "similarity": similarity.tolist(),
        "most_confused": most_confused(ev.metrics[SCORER]["confusion_matrix"], similarity, ev.class_names),
        "most_similar": most_similar(similarity, ev.class_names),
    }


def _rows(items: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """An HTML table of dicts: columns are (key, header, format)."""
    head = "".join(f'<th class="name">{h}</th>' if f == "s" else f"<th>{h}</th>" for _, h, f in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="name">{html.escape(str(item[k]))}</td>' if f == "s"
                         else f"<td>{item[k]:{f}}</td>" for k, _, f in columns) + "</tr>"
        for item in items
    )
    return f"<table><tr>{head}</tr>{body}</table>" if items else "<p>None.</p>"


def description_section(report: dict[str, Any], png: Path) -> tuple[str, str]:
    from clipcls.report import png_img

    confused = _rows(report["most_confused"], [("true", "true class", "s"), ("predicted", "predicted as", "s"),
                                               ("count", "images", "d"), ("share_of_true", "share", ".2f"),
                                               ("description_similarity", "description cosine", ".3f")])
    similar = _rows(report["most_similar"], [("a", "class", "s"), ("b", "class", "s"), ("cosine", "cosine", ".3f")])
    descs = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(' | '.join(d))}</li>"
                    for n, d in report["descriptions"].items())
    body = (
        '<p class="note">Pairs the model confuses, and pairs whose descriptions embed close together, are the '
        "first descriptions to rewrite: name what tells the classes apart.</p>"
        f"<h3>Most confused class pairs</h3>{confused}<h3>Most similar descriptions</h3>{similar}"
        f"<h3>Pairwise cosine similarity of the class descriptions</h3>{png_img(png, 'description similarity')}"
        f"<details><summary>descriptions</summary><ul>{descs}</ul></details>"
    )
    return "Description report", body


def print_description_report(report: dict[str, Any]) -> None:
    print("\nmost confused (true -> predicted: images, description cosine):")
    for c in report["most_confused"][:5] or [{"true": "-", "predicted": "-", "count": 0, "description_similarity": 0.0}]:
        print(f"  {c['true']} -> {c['predicted']}: {c['count']}, {c['description_similarity']:.3f}")
    print("most similar descriptions (cosine):")
    for p in report["most_similar"][:5]:
        print(f"  {p['a']} ~ {p['b']}: {p['cosine']:.3f}")


def zeroshot(args: argparse.Namespace) -> int:
    from clipcls.inference import softmax
    from clipcls.metrics import plot_similarity, write_json

    started = time.perf_counter()
    inputs = resolve_inputs(args)
    index, out = inputs["index"], inputs["out"]
    classifier, parts = build_zeroshot(inputs["model_name"], index.class_names, inputs["descriptions"])
    size = inputs["size"] or [parts.image_size, parts.image_size]
    device = pick_device(args.device)
    loader = make_eval_loader(index, size, parts.image_mean, parts.image_std, args.batch_size, args.workers)
    ev = evaluate_classifier(classifier, index, loader, device, lambda o: {SCORER: softmax(o["text_logits"])})
    similarity = similarity_matrix(classifier)
    report = description_report(ev, similarity, inputs["descriptions"])
    out.mkdir(parents=True, exist_ok=True)
    write_json({"model": inputs["model_name"], **report}, out / "descriptions.json")
    png = out / "description_similarity.png"
    plot_similarity(similarity, index.class_names, png, "Class description similarity (cosine)")
    info = {"model": inputs["model_name"], "descriptions_file": inputs["descriptions_file"],
            "data": inputs["data"], "image_size": f"{size[0]}x{size[1]}", "device": device}
    write_evaluation(ev, out, f"clipcls zero-shot: {inputs['model_name']}", info, SCORER,
                     extra_sections=[description_section(report, png)])
    warn_problems(ev)
    print(format_table({SCORER: summary(ev.metrics[SCORER])}))
    print_description_report(report)
    print(f"\n{len(ev.outputs['targets'])} images in {time.perf_counter() - started:.1f} s; "
          f"metrics.json, descriptions.json and report.html in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipcls zeroshot",
        description="Score un-fine-tuned CLIP with the class descriptions alone, and report which "
                    "descriptions are too alike. Give a run directory (its base model, descriptions and "
                    "validation split), or --model, --data and --descriptions; flags override the run's.")
    parser.add_argument("run", nargs="?", help="a training run directory")
    parser.add_argument("--model", help='CLIP Hub name, local directory or "tiny"')
    parser.add_argument("--data", help="class-folder tree to score")
    parser.add_argument("--descriptions", help="class-description YAML")
    parser.add_argument("--out", help="output directory (default: <run dir>/zeroshot, else ./zeroshot)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: the run's, else the model's native size)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: CPUs, up to 8)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: GPU if present)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`clipcls zeroshot RUN_DIR` or `clipcls zeroshot --model M --data D --descriptions Y`."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return exit_status(lambda: zeroshot(args))
