"""Fast dropout masks for CPU training (used by the BERT-style encoders in `nn.encoders`).

`torch.bernoulli_` draws one random number per element; with the official encoders' dropout 0.3 on hidden states
*and* attention probabilities that dominated the official TAILOR training step on CPU (32 % of it,
reference/official_speed.md). `keep_mask` instead cuts each 64-bit draw of torch's default generator into four
16-bit words and compares them with a threshold (about 4-5x less CPU time per element), and the mask is applied by
multiplication (masking with `masked_fill` costs ~5x more on CPU).

- The drop probability is p rounded to a multiple of 2^-16 (0.3 -> 0.300003); `keep_scale(p)` is the matching
  1 / (1 - p_eff), so inverted dropout keeps E[dropout(x)] = x exactly.
- Draws come from torch's default generator: `torch.manual_seed` and activation checkpointing (which restores the
  RNG state before recomputing) reproduce them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_WORD = 1 << 16  # values a 16-bit random word takes


def _drop_words(p: float) -> int:
    """How many of the 65536 word values mean "drop"."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return round(p * _WORD)


def keep_scale(p: float) -> float:
    """1 / (1 - p_eff) for the drop probability p_eff that `keep_mask` realises."""
    return _WORD / (_WORD - _drop_words(p))


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, device: torch.device | str | None = None) -> Tensor:
    """uint8 0/1 tensor of `shape`: 1 (= keep) with probability 1 - round(p * 2^16) / 2^16, independently.

    uint8 rather than bool because multiplying by it is ~5x faster than `masked_fill` on CPU, and autograd keeps
    it (one byte per element) for the backward pass of the product.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), (1 << 63) - 1)  # the full 64-bit range, i.e. four uniform 16-bit words per draw
    keep = words.view(torch.int16)[:n].view(shape) >= _drop_words(p) - (_WORD >> 1)
    return keep.view(torch.uint8)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout with a `keep_mask`; autograd keeps only the one-byte mask for the backward pass."""
    if not training or p == 0.0:
        return x
    return (x * keep_mask(x.shape, p, x.device)).mul_(keep_scale(p))


class FastDropout(nn.Module):
    """Drop-in replacement for `nn.Dropout` built on `dropout` above."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _drop_words(p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
