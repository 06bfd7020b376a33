"""Perturbations for robust training: of parameters (AMP's APP, amp ref §2.7) and of inputs (the baselines of
AMP's Table 2: FGSM, PGD, random erasing, Gaussian noise).

`perturbed_parameters` adds radius * d / ||d|| to a set of parameters for the duration of a `with` block and puts
the exact original values back on exit — also when the block raises — so an optimizer step can never see
perturbed weights. ||d|| is either the norm of all directions together ("global": the perturbation is one vector
of norm `radius`, AMP paper Eq. 12-14) or of each tensor separately ("tensor": every tensor moves by `radius`, the
official code). Directions with a zero or non-finite norm are skipped, as the code does. Gradients computed inside
the block are gradients at the perturbed point and stay in `.grad` after the restore.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

PerturbationNorm = Literal["global", "tensor"]
PERTURBATION_NORMS = ("global", "tensor")


def normalized_steps(directions: Sequence[Tensor], radius: float, norm: PerturbationNorm = "global") -> list[Tensor | None]:
    """radius * d / ||d|| for each direction (None where the step is skipped: zero or non-finite norm)."""
    if norm not in PERTURBATION_NORMS:
        raise ValueError(f"norm must be one of {PERTURBATION_NORMS}, got {norm!r}")
    if not directions:
        return []
    norms = torch.stack([d.detach().float().norm() for d in directions])  # [N]
    if norm == "global":
        total = norms.pow(2).sum().sqrt()
        if not bool(torch.isfinite(total)) or float(total) == 0.0:
            return [None] * len(directions)
        return [d.detach() * (radius / total).to(d.dtype) for d in directions]
    ok = (torch.isfinite(norms) & (norms > 0)).tolist()
    return [d.detach() * (radius / n).to(d.dtype) if good else None for d, n, good in zip(directions, norms, ok)]


@contextmanager
def perturbed_parameters(
    params: Sequence[nn.Parameter], directions: Sequence[Tensor], radius: float, norm: PerturbationNorm = "global"
) -> Iterator[list[Tensor | None]]:
    """Within the block, params[i] += radius * directions[i] / ||.||; always restored bit-for-bit on exit.

    Yields the steps actually applied (None where skipped).
    """
    if len(params) != len(directions):
        raise ValueError(f"{len(params)} parameters but {len(directions)} directions")
    steps = normalized_steps(directions, radius, norm)
    backups: list[tuple[nn.Parameter, Tensor]] = []
    try:
        with torch.no_grad():
            for p, step in zip(params, steps):
                if step is None:
                    continue
                backups.append((p, p.detach().clone()))
                p.add_(step)
        yield steps
    finally:
        with torch.no_grad():
            for p, saved in backups:
                p.copy_(saved)


# ------------------------------------------------------------------------------------ input perturbations


def fgsm_step(grad: Tensor, epsilon: float) -> Tensor:
    """FGSM (Goodfellow et al. 2015): epsilon * sign(grad), the L-inf ball's steepest ascent step."""
    return epsilon * grad.sign()


def pgd_update(delta: Tensor, grad: Tensor, step_size: float, epsilon: float) -> Tensor:
    """One PGD step (Madry et al. 2018): ascend along sign(grad), project back onto the L-inf ball of radius epsilon."""
    return (delta + step_size * grad.sign()).clamp(-epsilon, epsilon)


def random_erasing(x: Tensor, mask: Tensor, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4)) -> Tensor:
    """Random erasing (Zhong et al. 2020) along time: with probability p per sample, zero one contiguous span of
    the sample's real tokens covering a uniform fraction in `area` of them. x [B, L, D], mask bool [B, L]."""
    b = x.shape[0]
    n = mask.sum(1)  # [B]
    frac = torch.empty(b, device=x.device).uniform_(*area)
    span = torch.ceil(frac * n).long().clamp(min=1)  # [B]
    start = torch.floor(torch.rand(b, device=x.device) * (n - span + 1).clamp(min=1)).long()  # [B]
    rank = mask.long().cumsum(1) - 1  # [B, L]: index of each real token among the real tokens
    apply = torch.rand(b, device=x.device) < p
    erase = mask & apply[:, None] & (rank >= start[:, None]) & (rank < (start + span)[:, None])
    return x.masked_fill(erase.unsqueeze(-1), 0.0)


def gaussian_noise(x: Tensor, mask: Tensor, relative_std: float = 0.1) -> Tensor:
    """x + N(0, (relative_std * s)^2) on real tokens, s = standard deviation of the batch's real feature values
    (so one setting suits modalities of very different scales). x [B, L, D], mask bool [B, L]."""
    real = x.detach()[mask]
    if real.numel() < 2:
        return x
    noise = torch.randn_like(x) * (relative_std * real.std())
    return x + noise * mask.unsqueeze(-1).to(x.dtype)
