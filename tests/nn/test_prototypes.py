import pytest
import torch
import torch.nn.functional as F

from mmer.errors import ConfigError
from mmer.nn.prototypes import LabelPrototypes


def sequential_update(pos, neg, latents, labels, gamma):
    """The official per-sample loop: for b in batch order, for every (modality, label)."""
    pos, neg = pos.clone(), neg.clone()
    z = F.normalize(latents, dim=-1)
    for b in range(z.shape[0]):
        for m in range(z.shape[1]):
            for j in range(z.shape[2]):
                target = pos if labels[b, j] == 1 else neg
                target[m, j] = gamma * target[m, j] + (1 - gamma) * z[b, m, j]
    return pos, neg


def test_closed_form_update_equals_sequential_loop():
    g = torch.Generator().manual_seed(0)
    protos = LabelPrototypes(num_modalities=3, num_labels=4, dim=5, momentum=0.9).double()
    pos, neg = protos.positive.clone(), protos.negative.clone()
    for step in range(3):
        latents = torch.randn(7, 3, 4, 5, generator=g, dtype=torch.float64)
        labels = (torch.rand(7, 4, generator=g) < 0.4).double()
        labels[:, 0] = 1.0  # a label that every sample has (no negative members)
        labels[:, 1] = 0.0  # and one that none has
        pos, neg = sequential_update(pos, neg, latents, labels, 0.9)
        protos.update(latents, labels)
        torch.testing.assert_close(protos.positive, pos)
        torch.testing.assert_close(protos.negative, neg)
    assert protos.positive[:, 1].abs().max() == 0  # never had a positive member


def test_update_leaves_out_absent_modalities():
    """With `present`, a (sample, modality) the sample lacks is skipped, as if it were not in the batch."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(6, 3, 4, 5, generator=g, dtype=torch.float64)
    labels = (torch.rand(6, 4, generator=g) < 0.5).double()
    present = torch.rand(6, 3, generator=g) < 0.6
    protos = LabelPrototypes(3, 4, 5, momentum=0.8).double()
    protos.update(latents, labels, present)
    for m in range(3):
        keep = present[:, m]
        one = LabelPrototypes(1, 4, 5, momentum=0.8).double()
        pos, neg = sequential_update(one.positive, one.negative, latents[keep][:, m : m + 1], labels[keep], 0.8)
        torch.testing.assert_close(protos.positive[m : m + 1], pos)
        torch.testing.assert_close(protos.negative[m : m + 1], neg)
    with pytest.raises(ValueError, match="present"):
        protos.update(latents, labels, present[:, :2])


def test_update_is_detached_and_normalised():
    protos = LabelPrototypes(1, 1, 2, momentum=0.0)
    z = torch.tensor([[[[3.0, 4.0]]]], requires_grad=True)
    protos.update(z, torch.tensor([[1.0]]))
    torch.testing.assert_close(protos.positive, torch.tensor([[[0.6, 0.8]]]))
    assert not protos.positive.requires_grad


def test_soft_pattern_in_training_with_gradient_to_latents():
    torch.manual_seed(0)
    protos = LabelPrototypes(2, 3, 4)
    protos.positive.copy_(torch.randn(2, 3, 4) * 0.5)
    protos.negative.copy_(torch.randn(2, 3, 4) * 0.5)
    z = torch.randn(5, 2, 3, 4, requires_grad=True)
    c = protos.train().intrinsic(z)
    zn = F.normalize(z, dim=-1)
    s_pos, s_neg = (zn * protos.positive).sum(-1), (zn * protos.negative).sum(-1)
    w_pos = torch.exp(s_pos) / (torch.exp(s_pos) + torch.exp(s_neg))  # no temperature
    expected = w_pos[..., None] * protos.positive + (1 - w_pos[..., None]) * protos.negative
    torch.testing.assert_close(c, expected)
    c.sum().backward()
    assert z.grad.abs().sum() > 0


def test_hard_pattern_in_evaluation_with_ties_to_negative():
    protos = LabelPrototypes(1, 2, 2).eval()
    protos.positive.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    protos.negative.copy_(torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))  # label 1: identical prototypes -> tie
    z = torch.tensor([[[[2.0, 1.0], [1.0, 0.0]]], [[[1.0, 3.0], [0.0, 1.0]]]])  # [B=2, M=1, C=2, d=2]
    c = protos.intrinsic(z)
    torch.testing.assert_close(c[0, 0, 0], protos.positive[0, 0])  # s+ > s-
    torch.testing.assert_close(c[1, 0, 0], protos.negative[0, 0])  # s+ < s-
    torch.testing.assert_close(c[:, 0, 1], protos.negative[0, 1].expand(2, 2))  # tie -> negative
    fresh = LabelPrototypes(1, 1, 2).eval()  # all-zero prototypes: every similarity ties
    assert torch.all(fresh.intrinsic(torch.randn(3, 1, 1, 2)) == 0)
    soft_eval = LabelPrototypes(1, 2, 2, eval_pattern="soft").eval()
    soft_eval.load_state_dict(protos.state_dict())
    torch.testing.assert_close(soft_eval.intrinsic(z), soft_eval.train().intrinsic(z))


def test_options_are_validated():
    with pytest.raises(ConfigError, match="eval_pattern"):
        LabelPrototypes(1, 1, 1, eval_pattern="argmax")
    with pytest.raises(ConfigError, match="momentum"):
        LabelPrototypes(1, 1, 1, momentum=1.5)
    with pytest.raises(ValueError, match="labels"):
        LabelPrototypes(2, 3, 4).update(torch.randn(5, 2, 3, 4), torch.ones(5, 2))


def test_update_inside_the_forward_pass_keeps_the_graph_valid():
    """The model updates the prototypes after using them, before backward: the old values must survive."""
    torch.manual_seed(0)
    protos = LabelPrototypes(2, 3, 4).train()
    protos.update(torch.randn(6, 2, 3, 4), (torch.rand(6, 3) < 0.5).float())
    before = protos.positive.clone()
    z = torch.randn(5, 2, 3, 4, requires_grad=True)
    c = protos.intrinsic(z)
    protos.update(z, (torch.rand(5, 3) < 0.5).float())
    c.sum().backward()
    assert z.grad.abs().sum() > 0
    assert not torch.equal(protos.positive, before)
    assert protos.state_dict()["positive"].data_ptr() == protos.positive.data_ptr()  # still the saved buffer
