"""nn.dropout: the fast masks drop with the stated probability, independently, reproducibly; inverted dropout keeps
the expectation and passes gradients only through kept elements."""

from __future__ import annotations

import pytest
import torch

from mmer.nn.dropout import FastDropout, dropout, keep_mask, keep_scale


def test_keep_mask_rate_independence_and_seed():
    torch.manual_seed(3)
    mask = keep_mask((400, 1000), 0.3) == 0  # dropped
    assert keep_mask((2, 3), 0.3).dtype == torch.uint8 and mask.shape == (400, 1000)
    rate = mask.float().mean().item()
    assert abs(rate - 0.3) < 0.003  # 4e5 draws: std 7e-4
    # neighbouring elements (the four words of one 64-bit draw, and across draws) are uncorrelated
    flat = mask.flatten().float()
    for lag in (1, 2, 3, 4, 5):
        cov = (flat[:-lag] * flat[lag:]).mean() - flat[:-lag].mean() * flat[lag:].mean()
        assert abs(cov.item()) < 0.003, lag
    torch.manual_seed(3)
    assert torch.equal(keep_mask((400, 1000), 0.3) == 0, mask)
    assert keep_mask((1000,), 0.0).all()
    assert set(keep_mask((7,), 0.5).unique().tolist()) <= {0, 1} and keep_mask((7,), 0.5).shape == (7,)


def test_keep_scale_matches_the_realised_probability():
    assert keep_scale(0.3) == pytest.approx(65536 / (65536 - 19661))
    assert keep_scale(0.0) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        keep_scale(1.0)


def test_inverted_dropout_expectation_gradient_and_eval():
    torch.manual_seed(0)
    x = torch.full((500, 400), 2.0, requires_grad=True)
    y = dropout(x, 0.3)
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(2.0 * keep_scale(0.3)))
    assert abs(y.mean().item() - 2.0) < 0.02
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g != 0, kept) and torch.allclose(g[kept], torch.tensor(keep_scale(0.3)))
    module = FastDropout(0.3).eval()
    assert module(x) is x
    assert "p=0.3" in repr(module)
