import math

import torch

from mmer.nn.label_attention import LabelWiseAttention
from mmer.nn.masking import additive_key_mask, masked_softmax


def test_label_attention_matches_eq1_and_ignores_padding():
    torch.manual_seed(0)
    att = LabelWiseAttention(hidden_size=8, num_labels=3)
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    o = att(h, mask)
    assert o.shape == (2, 3, 8)
    u = att.queries.weight  # [C, d]
    for b, length in ((0, 3), (1, 5)):
        a = torch.softmax(h[b, :length] @ u.T, dim=0)  # [L, C]
        torch.testing.assert_close(o[b], a.T @ h[b, :length])
    h2 = h.clone()
    h2[0, 3:] = 100.0
    torch.testing.assert_close(att(h2, mask), o)
    w = att.weights(h, mask)
    assert torch.all(w[0, :, 3:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))


def test_sample_without_real_tokens_gives_zeros_and_finite_gradients():
    torch.manual_seed(0)
    att = LabelWiseAttention(hidden_size=4, num_labels=2)
    h = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    o = att(h, mask)
    assert torch.all(o[1] == 0) and torch.isfinite(o).all()
    o.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.all(h.grad[1] == 0)
    assert torch.isfinite(att.queries.weight.grad).all()


def test_queries_have_no_bias_and_xavier_init():
    torch.manual_seed(0)
    att = LabelWiseAttention(hidden_size=256, num_labels=6)
    assert att.queries.bias is None
    bound = math.sqrt(6.0 / (256 + 6))
    assert att.queries.weight.abs().max() <= bound and att.queries.weight.abs().max() > 0.9 * bound


def test_masking_helpers():
    scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    w = masked_softmax(scores, mask)
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([1.0, -math.inf, 3.0]), 0))
    assert torch.all(w[1] == 0)
    w.pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.all(scores.grad[1] == 0)
    bias = additive_key_mask(mask, torch.float32)
    assert bias.shape == (2, 1, 1, 3) and bias[0, 0, 0].tolist() == [0.0, -10000.0, 0.0]


def test_score_bias_shifts_the_attention_before_the_softmax():
    torch.manual_seed(0)
    att = LabelWiseAttention(4, 2)
    h, mask = torch.randn(3, 5, 4), torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    bias = torch.zeros(3, 2, 5)
    bias[:, 0, 2] = 50.0  # label 0 looks at position 2 only
    w = att.weights(h, mask, bias)
    torch.testing.assert_close(w[:, 0, 2], torch.ones(3))
    torch.testing.assert_close(w[:, 1], att.weights(h, mask)[:, 1])
    bias[1, 1, 4] = 1e4  # a bias never resurrects a padded position
    assert att.weights(h, mask, bias)[1, 1, 4] == 0
    torch.testing.assert_close(att(h, mask, bias), w @ h)
