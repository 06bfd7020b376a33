"""Differentiable SOFT top-k (Xie et al. 2020) as an entropic optimal-transport problem, batched and masked.

AMP's masking networks (amp ref §2.6) choose the k temporal units to mask with this operator. Each row of scores
s [n] is transported onto two anchors; the anchor that receives mass k/n gets the selected units:

    C_ij = (s_i - a_j)^2 / max C          a = (1, 0) for the k largest scores, (0, 1) for the k smallest
    Gamma = argmin_{Gamma 1 = mu, Gamma^T 1 = nu} <C, Gamma> - eps H(Gamma)        mu_i = 1/n, nu = (k/n, 1 - k/n)
    A_i = n Gamma_i0 in [0, 1],  sum_i A_i = k                                     (-> exact top-k as eps -> 0)

Batching and masks. `scores` is [G, B, L] (G groups, e.g. modalities, each a batch of B rows) and everything is
solved in one vectorised Sinkhorn loop over the G*B rows. As in the official code the cost is divided by its
maximum over the whole batch of a group (not per row), with the maximum treated as a constant, so solving the
modalities together gives the same result as one call per modality. Padding (mask False) gets mu_i = 0: it
carries no mass, is never selected and is not counted in n; k may differ per row. Rows with k = 0, k = n or no
real token have a constant (0/1) answer and zero gradient.

Solver. Sinkhorn in the standard domain when eps > 1e-2 (as the code), otherwise — or if the standard iterations
produce a non-finite plan — in the log domain. Gradients:
- "implicit" (default, the official backward): differentiate the optimality conditions at the computed plan
  instead of the iterations (derivation in docs/models/amp.md). Cheap in memory; exact at convergence.
- "unrolled": autograd through every Sinkhorn iteration; exact for the truncated solver, costs memory per step.
Both agree once Sinkhorn has converged (tests check it, and check the implicit gradient by finite differences).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

TopkGradient = Literal["implicit", "unrolled"]
TOPK_GRADIENTS = ("implicit", "unrolled")
STANDARD_DOMAIN_MIN_EPS = 1e-2  # below this exp(-C/eps) underflows; the official code switches domains here too


def soft_topk(
    scores: Tensor,
    k: int | Tensor,
    mask: Tensor | None = None,
    *,
    epsilon: float = 0.1,
    max_iter: int = 100,
    largest: bool = True,
    gradient: TopkGradient = "implicit",
) -> Tensor:
    """Soft indicator A [G, B, L] (or [B, L]) of the k largest (or smallest) scores of each row.

    scores: float [G, B, L] or [B, L]; k: int or long tensor broadcastable to the rows ([G, B] / [B]);
    mask: bool like `scores`, True = real token (None: all real). Returns A with A = 0 on padding.
    """
    if gradient not in TOPK_GRADIENTS:
        raise ValueError(f"gradient must be one of {TOPK_GRADIENTS}, got {gradient!r}")
    if epsilon <= 0 or max_iter < 1:
        raise ValueError(f"soft_topk needs epsilon > 0 and max_iter >= 1, got {epsilon} and {max_iter}")
    squeeze = scores.dim() == 2
    if squeeze:
        scores = scores.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if scores.dim() != 3:
        raise ValueError(f"scores must be [B, L] or [G, B, L], got shape {tuple(scores.shape)}")
    groups, batch, length = scores.shape
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool with the shape of scores {tuple(scores.shape)}, got {mask.dtype} {tuple(mask.shape)}")
    dtype = scores.dtype
    n = mask.sum(-1)  # [G, B]
    k = torch.as_tensor(k, device=scores.device).to(torch.long).expand(groups, batch).clamp(min=0)
    k = torch.minimum(k, n)
    degenerate = (k == 0) | (k == n)  # includes rows without a real token; the answer is constant there

    anchors = scores.new_tensor([1.0, 0.0] if largest else [0.0, 1.0])  # column 0 receives the selected mass
    cost = (scores.unsqueeze(-1) - anchors) ** 2  # [G, B, L, 2]
    valid = mask.unsqueeze(-1)  # [G, B, L, 1]
    cost = cost.masked_fill(~valid, 0.0)
    scale = cost.detach().amax(dim=(1, 2, 3), keepdim=True).clamp(min=torch.finfo(dtype).tiny)
    cost = cost / scale

    # degenerate rows are solved as a harmless uniform problem and overwritten below
    solve_mask = torch.where(degenerate.unsqueeze(-1) & (n.unsqueeze(-1) == 0), torch.ones_like(mask), mask)
    n_solve = solve_mask.sum(-1).to(dtype)  # [G, B]
    frac = torch.where(degenerate, torch.full_like(n_solve, 0.5), k.to(dtype) / n_solve)  # [G, B]
    mu = solve_mask.to(dtype) / n_solve.unsqueeze(-1)  # [G, B, L]
    nu = torch.stack([frac, 1.0 - frac], dim=-1)  # [G, B, 2]

    rows = groups * batch
    cost, mu, nu = cost.reshape(rows, length, 2), mu.reshape(rows, length, 1), nu.reshape(rows, 1, 2)
    if gradient == "implicit":
        plan = _ImplicitSinkhorn.apply(cost, mu, nu, epsilon, max_iter)
    else:
        plan = sinkhorn(cost, mu, nu, epsilon, max_iter)
    selected = plan[..., 0].reshape(groups, batch, length) * n_solve.unsqueeze(-1)  # [G, B, L]
    exact = (k.to(dtype) / n.clamp(min=1).to(dtype)).unsqueeze(-1) * mask.to(dtype)  # 0 or 1 on real tokens
    out = torch.where(degenerate.unsqueeze(-1), exact, selected * mask.to(dtype))
    return out.squeeze(0) if squeeze else out


def sinkhorn(cost: Tensor, mu: Tensor, nu: Tensor, epsilon: float, max_iter: int) -> Tensor:
    """Entropic OT plan [R, n, m] for cost [R, n, m], row marginals mu [R, n, 1], column marginals nu [R, 1, m].

    Differentiable by autograd (this is the "unrolled" gradient). Rows of mu may contain zeros (padding).
    """
    if epsilon > STANDARD_DOMAIN_MIN_EPS:
        plan = _sinkhorn_standard(cost, mu, nu, epsilon, max_iter)
        if bool(torch.isfinite(plan).all()):
            return plan
    return _sinkhorn_log(cost, mu, nu, epsilon, max_iter)


def _sinkhorn_standard(cost: Tensor, mu: Tensor, nu: Tensor, epsilon: float, max_iter: int) -> Tensor:
    kernel = torch.exp(-cost / epsilon)  # [R, n, m]
    v = torch.full_like(nu, 1.0 / nu.shape[-1])  # [R, 1, m]
    for _ in range(max_iter):
        u = mu / (kernel * v).sum(-1, keepdim=True)  # [R, n, 1]
        v = nu / (kernel * u).sum(-2, keepdim=True)  # [R, 1, m]
    return u * kernel * v


def _sinkhorn_log(cost: Tensor, mu: Tensor, nu: Tensor, epsilon: float, max_iter: int) -> Tensor:
    log_mu, log_nu = torch.log(mu), torch.log(nu)  # -inf where a marginal is 0: that row/column gets no mass
    f = torch.zeros_like(mu)  # [R, n, 1]
    g = torch.zeros_like(nu)  # [R, 1, m]
    for _ in range(max_iter):
        f = epsilon * (log_mu - torch.logsumexp((g - cost) / epsilon, dim=-1, keepdim=True))
        g = epsilon * (log_nu - torch.logsumexp((f - cost) / epsilon, dim=-2, keepdim=True))
    return torch.exp((f + g - cost) / epsilon)


def implicit_cost_gradient(grad_plan: Tensor, plan: Tensor, mu: Tensor, nu: Tensor, epsilon: float) -> Tensor:
    """d loss / d cost at the Sinkhorn fixed point, for two anchors (m = 2); all tensors [R, n, 2] / marginals.

    With G1 = grad_plan * plan, g1 = G1 summed over anchors, g2 = G1 summed over units for anchor 0, p = plan[:, 0]:
        q_i = p_i / mu_i,  K = nu_0 - sum_i p_i q_i,  l_i = q_i / K,  c = sum_i g1_i l_i
        dC_ij = plan_ij / eps * (-grad_ij + g1_i / mu_i + q_i c - l_i g2 + [j = 0] (g2 / K - c))
    Rows whose plan is a hard assignment (K = 0) have zero gradient almost everywhere and get exactly 0.
    """
    inv_mu = torch.where(mu > 0, 1.0 / mu, torch.zeros_like(mu)).squeeze(-1)  # [R, n]; padding rows carry no mass
    weighted = grad_plan * plan  # [R, n, 2]
    g1 = weighted.sum(-1)  # [R, n]
    g2 = weighted[..., 0].sum(-1, keepdim=True)  # [R, 1]
    p = plan[..., 0]  # [R, n]
    q = p * inv_mu  # [R, n]
    kappa = nu[..., 0] - (p * q).sum(-1, keepdim=True)  # [R, 1]
    hard = kappa <= 1e-12 * nu[..., 0].clamp(min=1e-30)
    kappa = torch.where(hard, torch.ones_like(kappa), kappa)
    ell = q / kappa  # [R, n]
    c = (g1 * ell).sum(-1, keepdim=True)  # [R, 1]
    shared = -grad_plan + (g1 * inv_mu + q * c - ell * g2).unsqueeze(-1)  # [R, n, 2]
    first = (g2 / kappa - c).unsqueeze(-1)  # [R, 1, 1], added to anchor 0 only
    shared = shared + torch.cat([first, torch.zeros_like(first)], dim=-1)
    grad_cost = plan * shared / epsilon
    return torch.where(hard.unsqueeze(-1), torch.zeros_like(grad_cost), grad_cost)


class _ImplicitSinkhorn(torch.autograd.Function):
    """Sinkhorn plan with the implicit-function backward (no graph through the iterations)."""

    @staticmethod
    def forward(ctx: Any, cost: Tensor, mu: Tensor, nu: Tensor, epsilon: float, max_iter: int) -> Tensor:  # type: ignore[override]
        if cost.shape[-1] != 2:
            raise ValueError(f"the implicit soft top-k backward is written for 2 anchors, got {cost.shape[-1]}")
        with torch.no_grad():
            plan = sinkhorn(cost, mu, nu, epsilon, max_iter)
        ctx.save_for_backward(plan, mu, nu)
        ctx.epsilon = epsilon
        return plan

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_plan: Tensor) -> tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        plan, mu, nu = ctx.saved_tensors
        return implicit_cost_gradient(grad_plan, plan, mu, nu, ctx.epsilon), None, None, None, None
