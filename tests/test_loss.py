"""The training objective on small cases computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipcls.model.loss import class_aware_contrastive, total_loss


def test_one_image_per_class_equals_symmetric_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.4, 0.2, 0.9]])
    labels = torch.tensor([0, 1, 2])
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert class_aware_contrastive(logits, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_two_images_of_one_class_are_both_positives_for_its_text():
    # images 0 and 1 are class 0, image 2 is class 1; class 2 is absent from the batch
    logits = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    rows = [[math.exp(v) for v in row] for row in logits.tolist()]
    image_side = sum(-math.log(rows[i][int(labels[i])] / sum(rows[i])) for i in range(3)) / 3
    # text 0 over images (1, 1, 0): target (1/2, 1/2, 0); text 1 over (0, 0, 2): target (0, 0, 1)
    z0 = 2 * math.e + 1
    text0 = -(0.5 * math.log(math.e / z0) + 0.5 * math.log(math.e / z0))
    text1 = -math.log(math.exp(2) / (2 + math.exp(2)))
    expected = (image_side + (text0 + text1) / 2) / 2
    assert class_aware_contrastive(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_same_class_images_are_not_pushed_apart():
    """Every image's similarity to its own class text has a negative gradient (raising it lowers
    the loss), even with several images of that class in the batch. A naive N x N loss over
    duplicated texts would push each image away from the copies of its own text."""
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    class_aware_contrastive(logits, labels).backward()
    own = logits.grad[torch.arange(6), labels]
    assert (own < 0).all()


def test_total_loss_weights_and_label_smoothing():
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    head = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    out = total_loss(text, head, labels, sim_weight=0.25, fc_weight=0.75, label_smoothing=0.1)
    # smoothed targets over 2 classes: 0.95 on the label, 0.05 on the other
    log_p = F.log_softmax(head, dim=1)
    ce = -(0.95 * log_p[0, 0] + 0.05 * log_p[0, 1] + 0.95 * log_p[1, 1] + 0.05 * log_p[1, 0]) / 2
    contrastive = class_aware_contrastive(text, labels)
    assert out["cross_entropy"].item() == pytest.approx(ce.item(), abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.25 * contrastive.item() + 0.75 * ce.item(), abs=1e-6)
