"""The realised drop probability is exactly round(p 2^16) / 2^16 and the scale exactly matches it."""

from __future__ import annotations

import torch

from mmer.nn.dropout import dropout, keep_mask, keep_scale


def test_keep_mask_with_p_zero_never_drops():
    torch.manual_seed(0)
    assert bool(keep_mask((1 << 22,), 0.0).all())  # an off-by-one threshold would drop ~64 of these


def test_kept_values_are_multiplied_by_exactly_keep_scale():
    torch.manual_seed(0)
    x = torch.full((64, 64), 2.0)
    y = dropout(x, 0.3)
    kept = y != 0
    assert torch.equal(y[kept], x[kept] * keep_scale(0.3))
