"""How good is a pretrained miniature CLIP: zero-shot on the task, retrieval on the world.

    python -m clipcls.world.evaluate_zeroshot --model DIR --data TASK_DIR \
        [--descriptions info/mini_task_descriptions.yaml] [--retrieval 1000]

Zero-shot follows open_clip's zero_shot_classifier: encode every description, L2-normalise,
average per class, renormalise; an image's class is the one whose embedding has the highest
cosine with the normalised image embedding. Retrieval: for held-out world pairs (a seed the
pretraining pool never used), is each caption's nearest picture its own (caption -> image R@1)?
It reads the model only through `transformers` (from_pretrained), like any Hub checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from clipcls.world.captions import caption
from clipcls.world.render import render_scene
from clipcls.world.scene import pretraining_scene

RETRIEVAL_SEED = 1_000_003  # a world stream disjoint from the pretraining pool's (seed 0..)


def load(model_dir: str | Path):
    """(model, tokenizer, processor) through the standard transformers loaders, in eval mode."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir), AutoImageProcessor.from_pretrained(model_dir)


def _projected(output) -> torch.Tensor:
    """The projected embedding: transformers 5 wraps it in an output's pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings, one row per text."""
    tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    return torch.nn.functional.normalize(_projected(model.get_text_features(**tokens)), dim=-1)


@torch.no_grad()
def encode_images(model, processor, images: list, batch: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings (PIL images or HxWx3 uint8 arrays), one row per image."""
    rows = []
    for start in range(0, len(images), batch):
        pixels = processor(images=images[start : start + batch], return_tensors="pt")
        rows.append(_projected(model.get_image_features(pixel_values=pixels["pixel_values"])))
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1)


def class_embeddings(model, tokenizer, descriptions: dict[str, list[str]]) -> torch.Tensor:
    """One unit vector per class: the renormalised mean of its descriptions' embeddings."""
    means = [encode_texts(model, tokenizer, texts).mean(0) for texts in descriptions.values()]
    return torch.nn.functional.normalize(torch.stack(means), dim=-1)


def read_split(folder: Path, classes: list[str], limit: int | None = None):
    """Images and integer labels of `folder/<class>/*.jpg`, classes in the given order."""
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.jpg"))[:limit]:
            images.append(Image.open(path).convert("RGB"))
            labels.append(label)
    return images, np.array(labels)


def zero_shot(
    model, tokenizer, processor, descriptions: dict[str, list[str]], images: list, labels: np.ndarray
) -> dict[str, float]:
    """Zero-shot accuracy and macro F1 of the images against the classes' descriptions."""
    weights = class_embeddings(model, tokenizer, descriptions)
    predicted = (encode_images(model, processor, images) @ weights.T).argmax(-1).numpy()
    return {
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "macro_f1": round(float(f1_score(labels, predicted, average="macro", labels=range(len(descriptions)))), 4),
    }


def retrieval_r1(model, tokenizer, processor, pairs: int = 1000) -> float:
    """Caption -> image R@1 over `pairs` held-out world pairs (chance is 1/pairs)."""
    scenes = [pretraining_scene(RETRIEVAL_SEED, i) for i in range(pairs)]
    images = [render_scene(s) for s in scenes]
    texts = [caption(s, np.random.default_rng([RETRIEVAL_SEED, i])) for i, s in enumerate(scenes)]
    similarity = encode_texts(model, tokenizer, texts) @ encode_images(model, processor, images).T
    return round(float((similarity.argmax(-1) == torch.arange(pairs)).float().mean()), 4)


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring. Prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m clipcls.world.evaluate_zeroshot")
    parser.add_argument("--model", required=True, help="save_pretrained CLIP directory")
    parser.add_argument("--data", required=True, help="task folder from clipcls.world.task")
    parser.add_argument("--descriptions", default="info/mini_task_descriptions.yaml")
    parser.add_argument("--splits", nargs="+", default=["test", "shifted"])
    parser.add_argument("--retrieval", type=int, default=1000, help="world pairs; 0 skips")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, processor = load(args.model)
    descriptions = yaml.safe_load(Path(args.descriptions).read_text())
    result: dict[str, object] = {}
    for split in args.splits:
        images, labels = read_split(Path(args.data) / split, list(descriptions))
        result[split] = zero_shot(model, tokenizer, processor, descriptions, images, labels)
    if args.retrieval:
        result[f"retrieval_r1_{args.retrieval}"] = retrieval_r1(model, tokenizer, processor, args.retrieval)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
