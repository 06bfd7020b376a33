"""Adversarial multi-modal refinement (TAILOR Eq. 1-7, RAMer Eq. 1-5): commonality vs specificity.

- Specificity nets f_m (one per modality) and a shared common generator G, each Linear(d, d) -> Dropout -> tanh
  (dropout 0.1 for f_m and 0.3 for G, before the tanh, as both codes; the papers say "fully connected networks").
- Modality discriminator D applied per token. Default "mlp" = the code's Linear(d, d/2) -> Dropout 0.1 -> ReLU ->
  Linear(d/2, M), because the papers are unspecific (TAILOR Eq. 2 writes softmax(I^T W + b) with a
  position-specific bias; RAMer "linear layers with softmax"); "linear" = that paper form, with the
  position-specific bias when `num_positions` is given.
- L_C = sum_m CE(D(GRL_lambda(C^m)), m) and L_S = sum_m CE(D(S^m), m) (TAILOR Eq. 4-5 / RAMer Eq. 1-2; TAILOR
  calls S^m P^m). Each CE is a mean over the real tokens of that modality (padding and missing tokens excluded),
  as the code's mean over B*L tokens when nothing is masked. The gradient reversal makes G (and everything below
  it) maximise L_C while D minimises it, in one joint step (no alternating schedule, as in the code).
- Orthogonality: orth(X, Y) = (1/B) sum_b ||X_b Y_b^T||_F^2 over the token-by-token Gram matrix (padding rows
  zeroed). pairs="paper": sum_m orth(C^m, S^m), with a *positive* sign (the papers' leading minus would maximise
  the overlap; it is a typo — the code minimises the positive quantity); pairs="code" adds the specific-specific
  pairs orth(S^m, S^n), m < n. The papers sum over samples; the code's 1/B (a constant weight) is kept.
- Common semantic loss L_cml (TAILOR Eq. 7, RAMer Eq. 3): mode="paper" predicts labels from each C^m (masked
  mean over tokens -> one shared Linear(d, C)) and sums the BCEs over modalities; mode="code" uses one Linear on
  token 0 of sum_m C^m with dropout 0.1 on the logits (the code's `common_classfier`, masks ignored as there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.errors import ConfigError, unknown_name
from mmer.nn.masking import masked_mean, masked_token_mean

DiscriminatorKind = Literal["mlp", "linear"]
DISCRIMINATOR_KINDS = ("mlp", "linear")
OrthPairs = Literal["paper", "code"]
ORTH_PAIRS = ("paper", "code")
CommonSemanticMode = Literal["paper", "code"]
COMMON_SEMANTIC_MODES = ("paper", "code")


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by -lambd in the backward pass (Ganin & Lempitsky)."""
    return _GradientReversal.apply(x, lambd)


class GradientReversal(nn.Module):
    """Module form of `grad_reverse` (lambda = 1 in both official codes)."""

    def __init__(self, lambd: float = 1.0):
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)


def _projection(d: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.Dropout(dropout), nn.Tanh())


class SpecificityNets(nn.Module):
    """f_m, one per modality: list of [B, L_m, d] -> list of S^m [B, L_m, d] (Linear -> Dropout -> tanh)."""

    def __init__(self, num_modalities: int, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.nets = nn.ModuleList(_projection(hidden_size, dropout) for _ in range(num_modalities))

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        if len(xs) != len(self.nets):
            raise ValueError(f"expected {len(self.nets)} modalities, got {len(xs)}")
        return [f(x) for f, x in zip(self.nets, xs)]


class CommonGenerator(nn.Module):
    """G, shared by all modalities: list of [B, L_m, d] -> list of C^m [B, L_m, d] (Linear -> Dropout -> tanh)."""

    def __init__(self, hidden_size: int, dropout: float = 0.3):
        super().__init__()
        self.net = _projection(hidden_size, dropout)

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [self.net(x) for x in xs]


class ModalityDiscriminator(nn.Module):
    """D: features [B, L, d] -> modality logits [B, L, M] per token (softmax is inside the CE)."""

    def __init__(
        self,
        hidden_size: int,
        num_modalities: int,
        kind: DiscriminatorKind = "mlp",
        dropout: float = 0.1,
        num_positions: int | None = None,
    ):
        super().__init__()
        if kind not in DISCRIMINATOR_KINDS:
            raise ConfigError(unknown_name("discriminator kind", kind, DISCRIMINATOR_KINDS))
        if kind == "mlp":
            self.net: nn.Module = nn.Sequential(
                nn.Linear(hidden_size, hidden_size // 2),
                nn.Dropout(dropout),
                nn.ReLU(),
                nn.Linear(hidden_size // 2, num_modalities),
            )
        else:
            self.net = nn.Linear(hidden_size, num_modalities)
        use_bias = kind == "linear" and num_positions is not None
        self.position_bias = nn.Parameter(torch.zeros(num_positions, num_modalities)) if use_bias else None

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x)  # [B, L, M]
        if self.position_bias is not None:
            if x.shape[1] > self.position_bias.shape[0]:
                raise ConfigError(
                    f"discriminator num_positions={self.position_bias.shape[0]} but the input has {x.shape[1]} tokens"
                )
            logits = logits + self.position_bias[: x.shape[1]]
        return logits

    def modality_loss(
        self, xs: Sequence[Tensor], masks: Sequence[Tensor | None] | None = None, reverse: float | None = None
    ) -> Tensor:
        """sum_m mean over real tokens of CE(D(x_m), m); with `reverse`=lambda the inputs pass through GRL first.

        L_S = modality_loss(S); L_C = modality_loss(C, reverse=1.0). xs[m] is [B, L_m, d] for modality m.
        """
        masks = masks if masks is not None else [None] * len(xs)
        total = xs[0].new_zeros(())
        for m, (x, mask) in enumerate(zip(xs, masks)):
            logits = self(grad_reverse(x, reverse) if reverse is not None else x)  # [B, L, M]
            target = torch.full(logits.shape[:2], m, dtype=torch.long, device=logits.device)
            ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
            total = total + masked_token_mean(ce, mask)
        return total


def orthogonality(x: Tensor, y: Tensor, x_mask: Tensor | None = None, y_mask: Tensor | None = None) -> Tensor:
    """orth(X, Y) = (1/B) sum_b ||X_b Y_b^T||_F^2 for X [B, L1, d], Y [B, L2, d]; masked tokens count as zero rows."""
    if x_mask is not None:
        x = x * x_mask.unsqueeze(-1).to(x.dtype)
    if y_mask is not None:
        y = y * y_mask.unsqueeze(-1).to(y.dtype)
    gram = torch.bmm(x, y.transpose(1, 2))  # [B, L1, L2]
    return gram.pow(2).sum(dim=(1, 2)).mean()


def orthogonality_loss(
    common: Sequence[Tensor],
    specific: Sequence[Tensor],
    masks: Sequence[Tensor | None] | None = None,
    pairs: OrthPairs = "paper",
) -> Tensor:
    """sum_m orth(C^m, S^m) (+ sum_{m<n} orth(S^m, S^n) with pairs="code"); lists indexed by modality."""
    if pairs not in ORTH_PAIRS:
        raise ConfigError(unknown_name("orthogonality pairs", pairs, ORTH_PAIRS))
    masks = masks if masks is not None else [None] * len(common)
    total = common[0].new_zeros(())
    for c, s, mask in zip(common, specific, masks):
        total = total + orthogonality(c, s, mask, mask)
    if pairs == "code":
        for m in range(len(specific)):
            for n in range(m + 1, len(specific)):
                total = total + orthogonality(specific[m], specific[n], masks[m], masks[n])
    return total


class CommonSemanticHead(nn.Module):
    """Multi-label prediction from the commonality features; `loss` gives L_cml (see module docstring)."""

    def __init__(
        self, hidden_size: int, num_labels: int, mode: CommonSemanticMode = "paper", logit_dropout: float | None = None
    ):
        super().__init__()
        if mode not in COMMON_SEMANTIC_MODES:
            raise ConfigError(unknown_name("common semantic mode", mode, COMMON_SEMANTIC_MODES))
        self.mode = mode
        self.classifier = nn.Linear(hidden_size, num_labels)
        self.dropout = nn.Dropout((0.1 if mode == "code" else 0.0) if logit_dropout is None else logit_dropout)

    def forward(self, common: Sequence[Tensor], masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Logits: [B, M, C] in mode "paper" (one prediction per C^m), [B, 1, C] in mode "code"."""
        if self.mode == "code":
            if len({tuple(c.shape) for c in common}) != 1:
                raise ValueError("common semantic mode 'code' sums the C^m, so they must have the same shape")
            pooled = torch.stack(list(common)).sum(0)[:, :1]  # [B, 1, d]: token 0 of sum_m C^m
        else:
            masks = masks if masks is not None else [None] * len(common)
            pooled = torch.stack(
                [c.mean(1) if mask is None else masked_mean(c, mask) for c, mask in zip(common, masks)], dim=1
            )  # [B, M, d]
        return self.dropout(self.classifier(pooled))

    def loss(self, common: Sequence[Tensor], labels: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """sum over prediction rows of mean-BCE(logits, y): sum_m BCE(C^m) ("paper") or one BCE ("code").

        In mode "paper" a sample whose modality m has no real token is left out of the BCE of C^m.
        """
        logits = self(common, masks)  # [B, R, C]
        target = labels.unsqueeze(1).expand_as(logits)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=2)  # [B, R]
        if self.mode == "code" or masks is None:
            return bce.mean(dim=0).sum()
        present = torch.stack(
            [torch.ones_like(bce[:, 0], dtype=torch.bool) if m is None else m.any(dim=1) for m in masks], dim=1
        )  # [B, M]
        return torch.stack([masked_token_mean(bce[:, r], present[:, r]) for r in range(bce.shape[1])]).sum()
