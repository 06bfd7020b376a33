"""Per-tensor skipping of non-finite directions, random-erasing span length, noise scale."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmer.nn.perturbation import gaussian_noise, perturbed_parameters, random_erasing


def test_tensor_norm_skips_a_non_finite_direction_and_moves_the_others():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.zeros(2))
    before_a = a.detach().clone()
    dirs = [torch.tensor([1.0, float("inf"), 0.0]), torch.tensor([3.0, 4.0])]
    with perturbed_parameters([a, b], dirs, radius=0.5, norm="tensor") as steps:
        assert steps[0] is None
        assert torch.equal(a.detach(), before_a)
        torch.testing.assert_close(b.detach(), torch.tensor([0.3, 0.4]))
    assert torch.equal(a.detach(), before_a) and torch.equal(b.detach(), torch.zeros(2))


def test_random_erasing_zeroes_exactly_ceil_fraction_of_the_real_tokens():
    torch.manual_seed(0)
    b, length = 64, 10
    n = torch.arange(b) % length + 1  # 1..10 real tokens
    mask = torch.arange(length)[None] < n[:, None]
    x = torch.ones(b, length, 2)
    out = random_erasing(x, mask, p=1.0, area=(0.25, 0.25))
    erased = (out[..., 0] == 0) & mask
    expected = torch.ceil(0.25 * n.float()).long()
    assert torch.equal(erased.sum(1), expected)
    for row in range(b):  # one contiguous span
        idx = erased[row].nonzero().flatten()
        assert int(idx[-1] - idx[0]) + 1 == len(idx)
    assert torch.equal(out[~mask], x[~mask])


def test_gaussian_noise_scale_comes_from_the_real_tokens_only():
    torch.manual_seed(0)
    x = torch.randn(8, 50, 10)
    mask = torch.ones(8, 50, dtype=torch.bool)
    mask[:, 40:] = False
    x[~mask] = 1000.0  # padding garbage must not inflate the noise
    out = gaussian_noise(x, mask, relative_std=0.1)
    noise_std = (out - x)[mask].std().item()
    assert math.isclose(noise_std, 0.1 * x[mask].std().item(), rel_tol=0.1)
    assert torch.equal(out[~mask], x[~mask])
