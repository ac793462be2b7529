"""The training objective: class-aware image-description contrast plus a label-smoothed head."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_aware_contrastive(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss between B images and C class descriptions.

    `logits` is (B, C): scaled cosine similarity of every image with every class text. The
    image->text side is a cross-entropy over the C classes. The text->image side treats every
    image of a class in the batch as a positive for that class's text (uniform soft target), so
    no image is pushed away from the identical text of its own class. Texts of classes absent
    from the batch have no positive and are left out of that side. With one image per class
    (the seed's sampler) this is exactly the N x N symmetric cross-entropy.
    """
    image_to_text = F.cross_entropy(logits, labels)
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype).T  # (C, B)
    present = one_hot.sum(dim=1) > 0
    targets = one_hot[present] / one_hot[present].sum(dim=1, keepdim=True)
    log_probs = F.log_softmax(logits.T[present], dim=1)  # each text over the batch's images
    text_to_image = -(targets * log_probs).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def total_loss(
    text_logits: torch.Tensor,
    head_logits: torch.Tensor,
    labels: torch.Tensor,
    sim_weight: float,
    fc_weight: float,
    label_smoothing: float,
) -> dict[str, torch.Tensor]:
    """`sim_weight * contrastive + fc_weight * cross_entropy`, with both parts for logging."""
    contrastive = class_aware_contrastive(text_logits, labels)
    cross_entropy = F.cross_entropy(head_logits, labels, label_smoothing=label_smoothing)
    return {
        "loss": sim_weight * contrastive + fc_weight * cross_entropy,
        "contrastive": contrastive.detach(),
        "cross_entropy": cross_entropy.detach(),
    }
