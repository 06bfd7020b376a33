"""Class-conditional prototypes and intrinsic latents (CARAT Eq. 8-10, RAMer Eq. 9-10).

Buffers mu+ and mu- [M, C, d_z], zero-initialised, one pair per (modality, label); never trained by gradient.

Momentum update (Eq. 8), from the detached L2-normalised latents z^ [B, M, C, d_z]: the official code walks the
batch sample by sample, mu <- g mu + (1 - g) z^_b for every member b of the (modality, label, polarity) class. With
members b_1 < ... < b_k of a class this is exactly

    mu <- g^k mu + (1 - g) sum_r g^(k - r) z^_{b_r}

which `update` evaluates for all classes at once (a reverse cumulative count gives every member's k - r). No
renormalisation afterwards, as in the code (the prototypes' norms stay below 1).

Intrinsic latent (Eq. 9-10), from the *current* (pre-update) prototypes, with s+/- = <z^, mu+/->:
- soft (training, Eq. 9): c = w+ mu+ + w- mu-, (w+, w-) = softmax(s+, s-) — no temperature, as the code;
- hard (evaluation, Eq. 10): c = mu+ if s+ > s- else mu- (strict: ties, e.g. the all-zero initial prototypes,
  choose mu-). The code uses hard at evaluation; `eval_pattern="soft"` keeps the training pattern instead.
Gradient reaches the latents through the soft weights; the prototypes are constants.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.errors import ConfigError, unknown_name

EvalPattern = Literal["hard", "soft"]
EVAL_PATTERNS = ("hard", "soft")


class LabelPrototypes(nn.Module):
    """Positive/negative prototypes per (modality, label); see the module docstring for the equations."""

    def __init__(
        self, num_modalities: int, num_labels: int, dim: int, momentum: float = 0.99, eval_pattern: EvalPattern = "hard"
    ):
        super().__init__()
        if eval_pattern not in EVAL_PATTERNS:
            raise ConfigError(unknown_name("prototype eval_pattern", eval_pattern, EVAL_PATTERNS))
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"prototype momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.eval_pattern = eval_pattern
        self.register_buffer("positive", torch.zeros(num_modalities, num_labels, dim))  # mu+ [M, C, d_z]
        self.register_buffer("negative", torch.zeros(num_modalities, num_labels, dim))  # mu- [M, C, d_z]

    def intrinsic(self, latents: Tensor) -> Tensor:
        """Raw latents z [B, M, C, d_z] -> intrinsic latents c [B, M, C, d_z] (soft in training)."""
        z = F.normalize(latents, dim=-1)  # [B, M, C, d_z]
        pos, neg = self.positive.to(z.dtype), self.negative.to(z.dtype)
        sims = torch.stack([(z * pos).sum(-1), (z * neg).sum(-1)], dim=-1)  # [B, M, C, 2]
        if self.training or self.eval_pattern == "soft":
            w = torch.softmax(sims, dim=-1)  # [B, M, C, 2]
            return w[..., :1] * pos + w[..., 1:] * neg
        choose_pos = (sims[..., 0] > sims[..., 1]).unsqueeze(-1)  # [B, M, C, 1]
        return torch.where(choose_pos, pos, neg).expand_as(z)

    @torch.no_grad()
    def update(self, latents: Tensor, labels: Tensor, present: Tensor | None = None) -> None:
        """EMA of the normalised, detached latents [B, M, C, d_z] into mu+ (y >= 0.5) or mu- (y < 0.5).

        `present` (bool [B, M], optional) leaves out the latents of modalities a sample lacks.
        """
        z = F.normalize(latents.detach(), dim=-1).to(self.positive.dtype)  # [B, M, C, d_z]
        if labels.shape != (z.shape[0], z.shape[2]):
            raise ValueError(f"labels {tuple(labels.shape)} do not match latents [B, M, C, d] = {tuple(z.shape)}")
        if present is not None and present.shape != z.shape[:2]:
            raise ValueError(f"present {tuple(present.shape)} does not match latents [B, M] = {tuple(z.shape[:2])}")
        positive = (labels >= 0.5).to(z.dtype)[:, None, :]  # [B, 1, C]
        has = z.new_ones(z.shape[:3]) if present is None else present.to(z.dtype)[:, :, None].expand(z.shape[:3])
        # new tensors, not in-place writes: this step's intrinsic vectors were built from the old prototypes and
        # their backward pass still needs them unchanged (the update runs inside the training forward pass)
        for name, member in (("positive", positive * has), ("negative", (1.0 - positive) * has)):  # [B, M, C]
            later = member.flip(0).cumsum(0).flip(0) - member  # [B, M, C]: members after b
            weight = member * (1.0 - self.momentum) * self.momentum**later  # [B, M, C]
            decay = self.momentum ** member.sum(0)  # [M, C]: g^k
            old = getattr(self, name)
            setattr(self, name, old * decay[..., None] + torch.einsum("bmc,bmcd->mcd", weight, z))
