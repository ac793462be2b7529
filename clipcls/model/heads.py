"""Classification heads on the L2-normalised image embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    """`scale * image @ normalize(weight).T + bias`: a linear head whose class directions are
    trained apart from their length (a cosine classifier).

    Initialised from the class embeddings, `weight` holds unit vectors (elements ~ 1/sqrt(dim)),
    so an Adam step of a given learning rate turns a class's direction by the same amount
    whatever the logit scale is. A plain linear head initialised at `scale * embeddings` moved by
    ~lr a step on weights ~scale/sqrt(dim): at mini's scale of 24.5 and lr 1e-3 a whole run moved
    it a few percent, and it stayed the zero-shot head. `scale` (per class, a fixed buffer) is the
    model's logit scale at initialisation; it is saved with the head. An old checkpoint's plain
    linear head (`weight`, `bias` only) loads exactly: its row norms become the per-class scale.
    """

    def __init__(self, dim: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("scale", torch.full((num_classes,), float(scale)))
        nn.init.normal_(self.weight, std=dim**-0.5)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.scale * (image @ F.normalize(self.weight, dim=-1).T) + self.bias

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errs):
        # a plain nn.Linear head's state (checkpoints and exports before the cosine head): the
        # same logits when its row norms become the scale
        if prefix + "weight" in state_dict and prefix + "scale" not in state_dict:
            state_dict[prefix + "scale"] = state_dict[prefix + "weight"].norm(dim=1).to(self.scale.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errs)


def build_head(kind: str, dim: int, num_classes: int, scale: float = 1.0) -> nn.Module:
    """The cosine-linear head (at logit scale `scale`), or the seed's two-layer MLP."""
    if kind == "linear":
        return CosineHead(dim, num_classes, scale)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(dim, num_classes))
    raise ValueError(f"unknown head {kind!r}: expected 'linear' or 'mlp'")


@torch.no_grad()
def init_head_zeroshot(head: nn.Module, class_embeddings: torch.Tensor, scale: float, bias: float = 0.0) -> None:
    """Make the linear head compute the zero-shot logits `scale * image @ class_embeddings.T + bias`
    (`bias`: SigLIP's logit bias, so even its sigmoid probabilities equal the zero-shot ones).

    Training then starts from zero-shot CLIP's predictions instead of chance.
    """
    if isinstance(head, CosineHead):
        head.weight.copy_(class_embeddings)
        head.scale.fill_(scale)
    elif isinstance(head, nn.Linear):
        head.weight.copy_(class_embeddings * scale)
    else:
        raise ValueError("zero-shot initialisation needs the linear head")
    head.bias.fill_(bias)
