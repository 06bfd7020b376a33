"""SOFT top-k: exact top-k in the low-entropy limit, marginals, masks, and gradients (finite differences,
implicit vs unrolled)."""

from __future__ import annotations

import pytest
import torch

from mmer.nn.soft_topk import _sinkhorn_log, _sinkhorn_standard, implicit_cost_gradient, sinkhorn, soft_topk


def hard_topk(scores: torch.Tensor, k: torch.Tensor, mask: torch.Tensor, largest: bool = True) -> torch.Tensor:
    """Reference: 1 on the k largest (smallest) real scores of each row, by sorting."""
    fill = float("-inf") if largest else float("inf")
    order = scores.masked_fill(~mask, fill).argsort(-1, descending=largest)
    rank = order.argsort(-1)
    return ((rank < k.unsqueeze(-1)) & mask).to(scores.dtype)


def spaced_scores(*shape: int, seed: int = 0) -> torch.Tensor:
    """Scores in (0, 1) whose sorted values are at least 1/(2L) apart (distinct ranks, clear low-entropy limit)."""
    g = torch.Generator().manual_seed(seed)
    length = shape[-1]
    base = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    perm = torch.stack([torch.randperm(length, generator=g) for _ in range(int(torch.tensor(shape[:-1]).prod()))])
    return base[perm].reshape(shape)


@pytest.mark.parametrize("largest", [True, False])
def test_low_entropy_limit_is_exact_topk_with_masks_and_per_row_k(largest):
    scores = spaced_scores(2, 3, 12)  # [G, B, L]
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[0, 1, 9:] = False
    mask[1, 2, :4] = False
    k = torch.tensor([[3, 5, 1], [6, 2, 4]])
    soft = soft_topk(scores, k, mask, epsilon=1e-3, max_iter=3000, largest=largest)
    assert torch.allclose(soft, hard_topk(scores, k, mask, largest), atol=2e-3)


def test_soft_mask_marginals_and_padding():
    torch.manual_seed(0)
    scores = torch.rand(3, 5, 10, dtype=torch.float64)
    mask = torch.rand(3, 5, 10) < 0.8
    mask[:, :, 0] = True
    k = (0.4 * mask.sum(-1)).round().long()
    a = soft_topk(scores, k, mask)
    assert torch.allclose(a.sum(-1), k.to(a.dtype), atol=1e-6)
    assert (a[~mask] == 0).all()
    assert (a >= 0).all() and (a <= 1 + 1e-3).all()  # <= 1 up to Sinkhorn's row-marginal error
    # eps 0.1 is soft: the mass is spread, but ordered like the scores within a row
    row, real = scores[0, 0][mask[0, 0]], a[0, 0][mask[0, 0]]
    assert torch.equal(row.argsort(), real.argsort())


def test_highest_of_s_equals_lowest_of_one_minus_s():
    """The official code marks the k lowest scores; that is the paper's k highest under s -> 1 - s, exactly."""
    s = torch.rand(4, 9, dtype=torch.float64)
    assert torch.allclose(soft_topk(s, 3, largest=True), soft_topk(1 - s, 3, largest=False), atol=1e-12)


def test_groups_are_normalised_separately_like_one_call_per_modality():
    s = torch.rand(3, 4, 8, dtype=torch.float64)
    s[1] = 0.45 + 0.1 * s[1]  # a group with a very different score range (its own cost maximum)
    joint = soft_topk(s, 3)
    for g in range(3):
        assert torch.allclose(joint[g], soft_topk(s[g], 3), atol=1e-12)


def test_degenerate_rows_have_exact_values_and_zero_gradient():
    s = torch.rand(1, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(1, 4, 6, dtype=torch.bool)
    mask[0, 3] = False  # no real token (a missing modality)
    k = torch.tensor([[0, 6, 2, 2]])
    a = soft_topk(s, k, mask)
    assert torch.equal(a[0, 0], torch.zeros(6, dtype=a.dtype))
    assert torch.equal(a[0, 1], torch.ones(6, dtype=a.dtype))
    assert torch.equal(a[0, 3], torch.zeros(6, dtype=a.dtype))
    (a * torch.randn_like(a)).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert torch.equal(s.grad[0, [0, 1, 3]], torch.zeros(3, 6, dtype=s.dtype))
    assert s.grad[0, 2].abs().sum() > 0


def test_implicit_gradient_matches_finite_differences():
    """gradcheck through soft_topk; row 0 is a fixed row holding the score 0, which pins the detached cost maximum
    at 1 so that finite differences see the same normalisation as the analytic gradient."""
    fixed = torch.tensor([[0.0, 0.3, 0.6, 0.9, 0.5, 0.2, 0.8]], dtype=torch.float64)
    free = (0.1 + 0.8 * torch.rand(2, 7, dtype=torch.float64)).requires_grad_()
    weights = torch.randn(3, 7, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (soft_topk(torch.cat([fixed, x]), 3, epsilon=0.2, max_iter=3000) * weights).sum()

    assert torch.autograd.gradcheck(f, (free,), eps=1e-6, atol=1e-6)


def test_implicit_cost_gradient_matches_unrolled_autograd_at_convergence():
    torch.manual_seed(0)
    cost = torch.rand(4, 9, 2, dtype=torch.float64, requires_grad=True)
    mu = torch.full((4, 9, 1), 1 / 9, dtype=torch.float64)
    mu[1, 6:] = 0.0  # padding carries no mass
    mu[1] = mu[1] / mu[1].sum()
    nu = torch.tensor([[[3 / 9, 6 / 9]]], dtype=torch.float64).expand(4, 1, 2).clone()
    nu[1] = torch.tensor([2 / 6, 4 / 6])
    upstream = torch.randn(4, 9, 2, dtype=torch.float64)
    plan = sinkhorn(cost, mu, nu, 0.1, 3000)
    unrolled = torch.autograd.grad((plan * upstream).sum(), cost)[0]
    implicit = implicit_cost_gradient(upstream, plan.detach(), mu, nu, 0.1)
    assert torch.allclose(implicit, unrolled, atol=1e-8)
    assert torch.equal(implicit[1, 6:], torch.zeros(3, 2, dtype=torch.float64))


def test_implicit_and_unrolled_options_agree_through_soft_topk():
    s = torch.rand(2, 3, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 10, dtype=torch.float64)
    g_imp = torch.autograd.grad((soft_topk(s, 4, max_iter=500) * w).sum(), s)[0]
    g_unr = torch.autograd.grad((soft_topk(s, 4, max_iter=500, gradient="unrolled") * w).sum(), s)[0]
    assert torch.allclose(g_imp, g_unr, atol=1e-7)


def test_falls_back_to_the_log_domain_when_the_standard_domain_underflows():
    cost = torch.tensor([[[0.0, 30.0], [30.0, 0.0], [15.0, 16.0]]])  # float32 exp(-C/0.05) underflows to 0
    mu = torch.full((1, 3, 1), 1 / 3)
    nu = torch.tensor([[[1 / 3, 2 / 3]]])
    assert not torch.isfinite(_sinkhorn_standard(cost, mu, nu, 0.05, 200)).all()
    plan = sinkhorn(cost, mu, nu, 0.05, 200)
    assert torch.equal(plan, _sinkhorn_log(cost, mu, nu, 0.05, 200))
    assert torch.allclose(plan.sum(-2), nu.squeeze(-2), atol=1e-6)  # the last update fits the columns exactly
    assert torch.allclose(plan.sum(-1), mu.squeeze(-1), atol=5e-3)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="gradient"):
        soft_topk(torch.rand(2, 5), 2, gradient="exact")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask"):
        soft_topk(torch.rand(2, 5), 2, torch.ones(2, 4, dtype=torch.bool))
