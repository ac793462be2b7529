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
    # text 0 over images (1, 1, 0): positives 0 and 1 share 2e / (2e + 1) of its softmax;
    # text 1 over (0, 0, 2): its one positive has e^2 / (2 + e^2)
    text0 = -math.log(2 * math.e / (2 * math.e + 1))
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


def test_no_positive_is_pushed_away_from_its_own_text_at_clip_scale():
    """A realistic batch (32 images, 19 classes, several images per class) at CLIP's scale of
    100: every image's own-class logit gets a gradient that raises it. The uniform soft target
    1/n_c pushed the best-aligned positives away (their softmax share exceeds 1/n_c)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (32,), generator=generator)
    cosines = 0.2 + 0.05 * torch.randn(32, 19, generator=generator)
    cosines[torch.arange(32), labels] += 0.05 * torch.rand(32, generator=generator)  # positives a bit closer
    logits = (100 * cosines).requires_grad_(True)
    assert (torch.bincount(labels) > 1).sum() >= 5  # several classes with several images
    class_aware_contrastive(logits, labels).backward()
    own = logits.grad[torch.arange(32), labels]
    assert (own < 0).all(), f"{int((own >= 0).sum())} of 32 images pushed away from their own text"


def test_text_side_is_the_log_of_the_summed_positive_softmax():
    logits = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    image_side = F.cross_entropy(logits, labels)
    p0 = torch.softmax(logits[:, 0], 0)
    p1 = torch.softmax(logits[:, 1], 0)
    text_side = (-torch.log(p0[0] + p0[1]) - torch.log(p1[2])) / 2
    expected = (image_side + text_side) / 2
    assert class_aware_contrastive(logits, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_losses_are_float32_from_bf16_logits():
    """Under bf16 autocast the logits may arrive in bf16: both losses are computed in float32."""
    torch.manual_seed(0)
    text = (100 * torch.rand(8, 5)).to(torch.bfloat16)
    head = (100 * torch.rand(8, 5)).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 1])
    out = total_loss(text, head, labels, sim_weight=0.5, fc_weight=0.5, label_smoothing=0.1)
    assert out["loss"].dtype == torch.float32
    expected = total_loss(text.float(), head.float(), labels, sim_weight=0.5, fc_weight=0.5, label_smoothing=0.1)
    assert out["loss"].item() == pytest.approx(expected["loss"].item(), abs=1e-6)


def test_logit_adjusted_loss_learns_the_balanced_classifier():
    """Fitting per-class biases alone to 90:10 labels: plain cross-entropy learns the prior's
    log-odds (log 9), so the rare class loses every close call; with tau * log(prior) added inside
    the loss (tau = 1) the biases that remain at prediction are equal (Menon et al. 2021)."""
    labels = torch.tensor([0] * 90 + [1] * 10)
    prior_offset = torch.log(torch.tensor([0.9, 0.1]))
    learned = {}
    for name, offset in (("plain", None), ("adjusted", prior_offset)):
        bias = torch.zeros(2, requires_grad=True)
        optimizer = torch.optim.LBFGS([bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure(offset=offset, bias=bias, optimizer=optimizer):
            optimizer.zero_grad()
            logits = bias.expand(len(labels), 2)
            loss = total_loss(logits, logits, labels, 0.0, 1.0, 0.0, logit_offset=offset)["loss"]
            loss.backward()
            return loss

        optimizer.step(closure)
        learned[name] = float(bias.detach()[0] - bias.detach()[1])
    assert learned["plain"] == pytest.approx(math.log(9), abs=1e-3)
    assert learned["adjusted"] == pytest.approx(0.0, abs=1e-3)


def test_logit_offset_is_added_to_both_scorers_inside_the_loss():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    offset = torch.tensor([0.5, -1.0, 2.0])
    got = total_loss(logits, logits * 2, labels, 0.3, 0.7, 0.1, logit_offset=offset)
    want = total_loss(logits + offset, logits * 2 + offset, labels, 0.3, 0.7, 0.1)
    for key in ("loss", "contrastive", "cross_entropy"):
        assert float(got[key]) == pytest.approx(float(want[key]))
    # a per-class constant moves only the image->text side of the contrastive loss
    plain = total_loss(logits, logits, labels, 1.0, 0.0, 0.0)["contrastive"]
    assert float(got["contrastive"]) != pytest.approx(float(plain))
