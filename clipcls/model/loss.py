"""The training objective: class-aware image-description contrast plus a label-smoothed head."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_aware_contrastive(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss between B images and C class descriptions, in float32.

    `logits` is (B, C): scaled cosine similarity of every image with every class text. The
    image->text side is a cross-entropy over the C classes. On the text->image side every image
    of a class in the batch is a positive for that class's text, and the loss is multi-positive:
    `-log sum_{i in pos} softmax_i`. Its gradient on a positive's logit is `p_i (1 - 1/P)` with
    P the positives' summed share, never positive, so no image is pushed away from its own
    class's text. (A uniform soft target 1/n_c pushes away every positive whose share exceeds
    1/n_c: at CLIP's scale of 100 the best-aligned ones.) Texts of classes absent from the batch
    have no positive and are left out of that side. With one image per class (the seed's sampler)
    this is exactly the N x N symmetric cross-entropy.
    """
    logits = logits.float()  # bf16 logits near 100 are quantised to 0.5
    image_to_text = F.cross_entropy(logits, labels)
    positive = F.one_hot(labels, logits.shape[1]).T.bool()  # (C, B)
    present = positive.any(dim=1)
    per_text = logits.T[present]  # each present text over the batch's images
    positives = per_text.masked_fill(~positive[present], float("-inf"))
    text_to_image = (torch.logsumexp(per_text, dim=1) - torch.logsumexp(positives, dim=1)).mean()
    return (image_to_text + text_to_image) / 2


def sigmoid_contrastive(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al., ICCV 2023) between B images and C class
    descriptions, in float32.

    `logits` is (B, C): scaled similarity plus the logit bias. Every image-text pair is its own
    binary problem, positive when the image is of the text's class: `-log sigmoid(z * logit)` with
    z = +1 or -1, summed over the texts and averaged over the images, as SigLIP normalises. Images
    of the same class are never each other's negatives, whatever the batch holds.
    """
    logits = logits.float()
    signs = 2 * F.one_hot(labels, logits.shape[1]).to(logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum(dim=1).mean()


CONTRASTIVE = {"softmax": class_aware_contrastive, "sigmoid": sigmoid_contrastive}


def total_loss(
    text_logits: torch.Tensor,
    head_logits: torch.Tensor,
    labels: torch.Tensor,
    sim_weight: float,
    fc_weight: float,
    label_smoothing: float,
    contrastive_loss: str = "softmax",
    logit_offset: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """`sim_weight * contrastive + fc_weight * cross_entropy`, with both parts for logging.

    Both parts are computed in float32 whatever the autocast dtype: smoothed targets and
    softmaxes in bf16 no longer sum to 1.

    `logit_offset` (C,), when given, is added to both scorers' logits inside the loss only: with
    `tau * log(class frequency)` this is the logit-adjusted loss (Menon et al., ICLR 2021), whose
    minimiser, read without the offset as at prediction, is the balanced-error classifier. (On
    the contrastive's text->image side a per-text constant changes nothing.)"""
    text_logits, head_logits = text_logits.float(), head_logits.float()
    if logit_offset is not None:
        text_logits, head_logits = text_logits + logit_offset, head_logits + logit_offset
    contrastive = CONTRASTIVE[contrastive_loss](text_logits, labels)  # the family's own (see adapters)
    cross_entropy = F.cross_entropy(head_logits, labels, label_smoothing=label_smoothing)
    return {
        "loss": sim_weight * contrastive + fc_weight * cross_entropy,
        "contrastive": contrastive.detach(),
        "cross_entropy": cross_entropy.detach(),
    }
