"""Issue 18, item 2: a head that can learn at any logit scale. Initialised at zero-shot with mini's
small scale (24.5), ~100 Adam steps at the default head learning rate must be able to move it to
labels permuted from its zero-shot predictions (the plain linear head at scale x embeddings moved
by ~lr a step and stayed the zero-shot head); an old plain-linear head's weights load exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipcls.cfg import CFG
from clipcls.model.heads import CosineHead, build_head, init_head_zeroshot

MINI_SCALE = 24.5


def features(num_classes: int = 7, dim: int = 128, per_class: int = 20, seed: int = 0):
    """Unit class embeddings and images near their own class's embedding (zero-shot is right)."""
    gen = torch.Generator().manual_seed(seed)
    classes = F.normalize(torch.randn(num_classes, dim, generator=gen), dim=-1)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    images = F.normalize(classes[labels] + 0.05 * torch.randn(len(labels), dim, generator=gen), dim=-1)
    return classes, images, labels


def test_the_default_head_learns_labels_permuted_from_its_zero_shot_init():
    classes, images, labels = features()
    head = build_head("linear", classes.shape[1], len(classes), MINI_SCALE)
    init_head_zeroshot(head, classes, MINI_SCALE)
    assert (head(images).argmax(1) == labels).float().mean() == 1.0  # starts at zero-shot
    permuted = (labels + 1) % len(classes)  # every image now belongs to another class's text
    head_lr = CFG.lr * CFG.head_lr_multiplier  # the default head learning rate
    optimizer = torch.optim.Adam(head.parameters(), lr=head_lr)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(head(images), permuted).backward()
        optimizer.step()
    accuracy = float((head(images).argmax(1) == permuted).float().mean())
    assert accuracy >= 0.9, f"the head fits {accuracy:.2f} of the permuted labels after 100 steps at lr {head_lr}"


def test_an_old_plain_linear_head_loads_with_the_same_logits():
    old = torch.nn.Linear(16, 5)
    with torch.no_grad():
        old.weight.mul_(30.0)
    head = CosineHead(16, 5)
    head.load_state_dict(old.state_dict())
    x = F.normalize(torch.randn(9, 16), dim=-1)
    assert torch.allclose(head(x), old(x), atol=1e-5)
    assert torch.allclose(head.scale, old.weight.norm(dim=1))
    assert set(head.state_dict()) == {"weight", "bias", "scale"}  # the scale is saved with the head


def test_zero_shot_init_computes_the_scaled_cosine_plus_bias():
    classes, images, _ = features(num_classes=4, dim=32)
    head = build_head("linear", 32, 4)
    init_head_zeroshot(head, classes, 12.0, bias=-3.0)
    assert torch.allclose(head(images), 12.0 * images @ classes.T - 3.0, atol=1e-5)
