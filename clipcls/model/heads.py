"""Classification heads on the L2-normalised image embedding."""

from __future__ import annotations

import torch
from torch import nn


def build_head(kind: str, dim: int, num_classes: int) -> nn.Module:
    """A linear head, or the seed's two-layer MLP."""
    if kind == "linear":
        return nn.Linear(dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(dim, num_classes))
    raise ValueError(f"unknown head {kind!r}: expected 'linear' or 'mlp'")


@torch.no_grad()
def init_head_zeroshot(head: nn.Module, class_embeddings: torch.Tensor, scale: float, bias: float = 0.0) -> None:
    """Make a linear head compute the zero-shot logits `scale * image @ class_embeddings.T + bias`
    (`bias`: SigLIP's logit bias, so even its sigmoid probabilities equal the zero-shot ones).

    Training then starts from zero-shot CLIP's predictions instead of chance.
    """
    if not isinstance(head, nn.Linear):
        raise ValueError("zero-shot initialisation needs the linear head")
    head.weight.copy_(class_embeddings * scale)
    head.bias.fill_(bias)
