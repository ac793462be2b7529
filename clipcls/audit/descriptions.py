"""Class-description checks shared by `clipcls audit` and `clipcls zeroshot`: which descriptions
embed too close together, which exceed the text tower's token limit, which classes lack one, and
per class the zero-shot recall its description gives on the folder's images."""

from __future__ import annotations

from typing import Any

import numpy as np

TOP_PAIRS = 10  # pairs listed by zeroshot's descriptions.json and report
SIMILAR_COSINE = 0.9  # class embeddings closer than this: the audit reports the pair


def similarity_matrix(classifier) -> np.ndarray:
    """Cosine similarity of a classifier's class embeddings (mean of normalised description
    embeddings, renormalised)."""
    import torch

    with torch.inference_mode():
        emb = classifier.class_embeddings().double().cpu().numpy()
    return np.clip(emb @ emb.T, -1.0, 1.0)


def most_similar(similarity: np.ndarray, class_names: list[str], top: int | None = TOP_PAIRS) -> list[dict[str, Any]]:
    """Distinct class pairs whose descriptions embed closest together, closest first."""
    n = len(class_names)
    pairs = [(float(similarity[i, j]), i, j) for i in range(n) for j in range(i + 1, n)]
    pairs.sort(key=lambda p: -p[0])
    return [{"a": class_names[i], "b": class_names[j], "cosine": value} for value, i, j in pairs[:top]]


def token_overflows(classifier, descriptions: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every description longer than the model's token limit (the tokenizer cuts the rest off
    silently), with its class and token count."""
    from clipcls.model.classifier import flatten_descriptions, over_token_limit

    names = list(descriptions)
    texts, owner = flatten_descriptions(names, descriptions)
    limit = classifier.adapter.max_text_tokens(classifier.clip, classifier.tokenizer)
    long = over_token_limit(classifier.tokenizer, texts, list(range(len(texts))), limit)  # (text index, tokens)
    return [{"class": names[owner[k]], "tokens": count, "limit": limit, "description": texts[k]} for k, count in long]


def zeroshot_recall(
    image_embeddings: np.ndarray, labels: np.ndarray, class_embeddings: np.ndarray, class_names: list[str]
) -> list[dict[str, Any]]:
    """Per class: images, the share the descriptions alone classify correctly (nearest class
    embedding), and the class its images are most often mistaken for."""
    predicted = (image_embeddings.astype(np.float32) @ class_embeddings.astype(np.float32).T).argmax(axis=1)
    rows = []
    for c, name in enumerate(class_names):
        mine = predicted[labels == c]
        wrong = mine[mine != c]
        confused = class_names[int(np.bincount(wrong).argmax())] if len(wrong) else ""
        recall = float((mine == c).mean()) if len(mine) else float("nan")
        rows.append({"class": name, "images": int(len(mine)), "recall": recall, "most_mistaken_for": confused})
    return rows


def missing_descriptions(class_names: list[str], descriptions: dict[str, list[str]]) -> list[str]:
    """Classes with no description: training refuses to start without one."""
    return [name for name in class_names if name not in descriptions]
