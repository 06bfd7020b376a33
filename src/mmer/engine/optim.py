"""Optimizers and learning-rate schedules used by the papers.

- `adamw`, `adam`: torch's own.
- `bertadam`: the BertAdam of the official CARAT/TAILOR/RAMer codes: Adam moments *without bias correction*,
  eps added to the square root (the codes use 1e-6, which their presets set as `train.eps`), decoupled weight decay added to the update before the lr
  multiplication, and each tensor's gradient clipped to L2 norm `max_grad_norm` right before its update (on top
  of the engine's global clip). Its warmup-linear schedule lives in the schedule below, not in the optimizer.
Schedules are multiplicative factors of the base lr as a function of the number of optimizer steps already taken,
so the first update of `warmup_linear` has lr 0 exactly as in the official codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mmer.config import TrainConfig


class BertAdam(Optimizer):
    """Adam as in the BERT reference code: no bias correction, decoupled weight decay, per-tensor clipping."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float | None = 1.0,
    ):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["max_grad_norm"]:
                # per-tensor clip: g <- g * min(1, max_norm / (||g|| + 1e-6)), as clip_grad_norm_ on each tensor
                norms = torch._foreach_norm(grads)
                scales = [torch.clamp(group["max_grad_norm"] / (n + 1e-6), max=1.0) for n in norms]
                torch._foreach_mul_(grads, scales)
            exp_avg, exp_avg_sq = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg.append(state["exp_avg"])
                exp_avg_sq.append(state["exp_avg_sq"])
            torch._foreach_mul_(exp_avg, beta1)
            torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_add_(denom, group["eps"])
            update = torch._foreach_div(exp_avg, denom)
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return loss


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> Optimizer:
    """The configured optimizer over the model's parameter groups (weight decay exemptions come from the model)."""
    groups = model.param_groups(cfg.weight_decay) if hasattr(model, "param_groups") else [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        # torch Adam's weight_decay is L2 added to the gradient (coupled), unlike AdamW
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return BertAdam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr for the update after `step` previous updates."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "epoch_warmup_cosine":
        return _epoch_warmup_cosine(cfg, step // max(steps_per_epoch, 1)) / cfg.lr
    x = step / max(total_steps, 1)
    w = min(cfg.warmup_steps / max(total_steps, 1), 1.0) if cfg.warmup_steps > 0 else cfg.warmup
    if x < w:
        return x / w
    if cfg.schedule == "warmup_linear":
        return max((1.0 - x) / (1.0 - w), 0.0) if w < 1.0 else 1.0
    # warmup_cosine
    progress = (x - w) / (1.0 - w) if w < 1.0 else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _epoch_warmup_cosine(cfg: TrainConfig, epoch: int) -> float:
    """lr of epoch `epoch` under timm's CosineLRScheduler(t_initial=epochs, warmup_t=warmup) stepped once at the
    end of each epoch with the finished epoch's index, as AMP's official code does: epochs 0 and 1 both use the
    warm-up start, epoch e >= 1 uses the schedule's value at t = e - 1."""
    t = max(epoch - 1, 0)
    warmup = int(cfg.warmup)
    if t < warmup:
        return cfg.warmup_start_lr + t * (cfg.lr - cfg.warmup_start_lr) / warmup
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * t / cfg.epochs))


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> LambdaLR:
    """Per-step lr factors of `cfg.schedule` (its keys were range-checked when the config was resolved)."""
    return LambdaLR(optimizer, lambda step: lr_factor(cfg, step, total_steps, steps_per_epoch))
