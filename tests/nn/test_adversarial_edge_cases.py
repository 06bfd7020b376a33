"""GRL strength in modality_loss, per-modality masks of the code pairs, L_cml sums modalities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmer.nn.adversarial import CommonSemanticHead, ModalityDiscriminator, orthogonality, orthogonality_loss


def test_modality_loss_reverse_multiplies_the_input_gradient_by_minus_lambda():
    torch.manual_seed(0)
    disc = ModalityDiscriminator(4, 2, kind="linear")
    xs = [torch.randn(2, 3, 4, requires_grad=True) for _ in range(2)]
    plain = torch.autograd.grad(disc.modality_loss(xs), xs)
    for lam in (0.5, 2.0):
        loss = disc.modality_loss(xs, reverse=lam)
        torch.testing.assert_close(loss, disc.modality_loss(xs))  # identity forward
        reversed_ = torch.autograd.grad(loss, xs)
        for g, p in zip(reversed_, plain):
            torch.testing.assert_close(g, -lam * p)


def test_code_pairs_mask_each_specific_modality_with_its_own_mask():
    torch.manual_seed(1)
    c = [torch.randn(2, 3, 4) for _ in range(2)]
    s = [torch.randn(2, 3, 4) for _ in range(2)]
    masks = [torch.tensor([[True, True, False], [True, False, False]]), torch.tensor([[True, False, True], [True, True, True]])]
    zero = [x * mk[..., None] for x, mk in zip(s, masks)]
    zc = [x * mk[..., None] for x, mk in zip(c, masks)]
    expected = sum(torch.bmm(a, b.transpose(1, 2)).pow(2).sum((1, 2)).mean() for a, b in zip(zc, zero))
    expected = expected + torch.bmm(zero[0], zero[1].transpose(1, 2)).pow(2).sum((1, 2)).mean()
    torch.testing.assert_close(orthogonality_loss(c, s, masks, pairs="code"), expected)
    torch.testing.assert_close(orthogonality(s[0], s[1], masks[0], masks[1]), torch.bmm(zero[0], zero[1].transpose(1, 2)).pow(2).sum((1, 2)).mean())


def test_paper_common_semantic_loss_without_masks_is_a_sum_over_modalities():
    torch.manual_seed(2)
    head = CommonSemanticHead(4, 3, mode="paper")
    common = [torch.randn(5, 2, 4) for _ in range(3)]
    y = (torch.rand(5, 3) < 0.5).float()
    expected = sum(F.binary_cross_entropy_with_logits(head.classifier(x.mean(1)), y) for x in common)
    torch.testing.assert_close(head.loss(common, y), expected)


def test_position_bias_only_for_the_linear_discriminator():
    assert ModalityDiscriminator(8, 3, kind="mlp", num_positions=5).position_bias is None
    assert ModalityDiscriminator(8, 3, kind="linear", num_positions=5).position_bias.shape == (5, 3)
