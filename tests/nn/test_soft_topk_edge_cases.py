"""Padding carries no mass and plays no part in the cost scale, whatever its scores are."""

from __future__ import annotations

import torch

from mmer.nn.soft_topk import soft_topk


def test_padding_does_not_change_the_answer_on_real_tokens():
    real = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7]])
    padded = torch.tensor([[0.9, 50.0, 0.1, 0.5, -40.0, 0.3, 0.7, 9.0]])
    mask = torch.tensor([[True, False, True, True, False, True, True, False]])
    for largest in (True, False):
        ref = soft_topk(real, 2, epsilon=0.05, largest=largest)
        out = soft_topk(padded, 2, mask, epsilon=0.05, largest=largest)
        torch.testing.assert_close(out[mask].view(1, -1), ref, rtol=1e-4, atol=1e-5)
        assert torch.equal(out[~mask], torch.zeros(3))
        torch.testing.assert_close(out.sum(), torch.tensor(2.0), rtol=1e-4, atol=1e-4)
