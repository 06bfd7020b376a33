"""Weight perturbation (always restored, right radius) and the input perturbations of AMP's Table 2 baselines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmer.nn.perturbation import (
    fgsm_step,
    gaussian_noise,
    normalized_steps,
    perturbed_parameters,
    pgd_update,
    random_erasing,
)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("norm", ["global", "tensor"])
def test_moves_by_the_radius_inside_and_restores_bit_for_bit(norm):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    params = [net[0].weight, net[1].weight]
    directions = [torch.randn_like(p) for p in params]
    before = snapshot(net)
    with perturbed_parameters(params, directions, radius=0.7, norm=norm):
        moved = [p.detach() - before[name] for p, name in zip(params, ("0.weight", "1.weight"))]
        if norm == "global":
            assert torch.stack([m.norm() for m in moved]).norm() == pytest.approx(0.7, rel=1e-5)
        else:
            assert [float(m.norm()) for m in moved] == pytest.approx([0.7, 0.7], rel=1e-5)
        for m, d in zip(moved, directions):  # along the direction
            assert torch.nn.functional.cosine_similarity(m.flatten(), d.flatten(), dim=0) > 0.9999
        assert torch.equal(net[0].bias, before["0.bias"])  # untouched
    assert same(snapshot(net), before)


def test_restores_when_the_block_raises():
    net = nn.Linear(6, 2)
    before = snapshot(net)
    with pytest.raises(RuntimeError, match="boom"):
        with perturbed_parameters([net.weight, net.bias], [torch.ones(2, 6), torch.ones(2)], radius=3.0):
            assert not torch.equal(net.weight, before["weight"])
            raise RuntimeError("boom")
    assert same(snapshot(net), before)


def test_gradients_inside_are_taken_at_the_perturbed_point_and_kept():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    with perturbed_parameters([w], [torch.tensor([3.0, 4.0])], radius=5.0):  # w -> (4, 6)
        (w**2).sum().backward()
    assert torch.equal(w.detach(), torch.tensor([1.0, 2.0]))
    assert torch.allclose(w.grad, torch.tensor([8.0, 12.0]))


def test_zero_or_non_finite_directions_are_skipped():
    assert normalized_steps([torch.zeros(3), torch.ones(2)], 1.0, "tensor")[0] is None
    assert normalized_steps([torch.zeros(3), torch.zeros(2)], 1.0, "global") == [None, None]
    assert normalized_steps([torch.tensor([float("nan")]), torch.ones(1)], 1.0, "global") == [None, None]
    p = nn.Parameter(torch.ones(3))
    with perturbed_parameters([p], [torch.zeros(3)], radius=1.0) as steps:
        assert steps == [None] and torch.equal(p.detach(), torch.ones(3))


def test_fgsm_and_pgd_steps_stay_in_the_linf_ball():
    g = torch.tensor([-2.0, 0.0, 0.5])
    assert torch.equal(fgsm_step(g, 0.1), torch.tensor([-0.1, 0.0, 0.1]))
    delta = torch.tensor([0.09, -0.05, 0.0])
    assert torch.allclose(pgd_update(delta, g, 0.04, 0.1), torch.tensor([0.05, -0.05, 0.04]))
    assert torch.allclose(pgd_update(torch.tensor([0.09]), torch.tensor([1.0]), 0.04, 0.1), torch.tensor([0.1]))


def test_random_erasing_zeroes_one_contiguous_span_of_real_tokens():
    torch.manual_seed(0)
    x = torch.rand(64, 20, 3) + 1.0
    mask = torch.arange(20)[None] < torch.randint(5, 21, (64, 1))
    mask[:, 0] = True
    out = random_erasing(x, mask, p=1.0)
    erased = (out == 0).all(-1)  # [B, L]
    assert not (erased & ~mask).any()  # padding is never touched (it keeps its values)
    assert erased.any(1).all()  # p = 1: every sample loses a span
    for row in erased:  # contiguous
        idx = row.nonzero().flatten()
        assert idx.max() - idx.min() + 1 == len(idx)
    assert torch.equal(out[~erased], x[~erased])
    assert torch.equal(random_erasing(x, mask, p=0.0), x)


def test_gaussian_noise_scales_with_the_data_and_spares_padding():
    torch.manual_seed(0)
    x = 50.0 * torch.randn(32, 10, 4)
    mask = torch.ones(32, 10, dtype=torch.bool)
    mask[:, 7:] = False
    out = gaussian_noise(x, mask, relative_std=0.1)
    assert torch.equal(out[~mask], x[~mask])
    noise_std = float((out - x)[mask].std())
    assert noise_std == pytest.approx(0.1 * float(x[mask].std()), rel=0.1)
