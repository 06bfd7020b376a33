"""Mask helpers shared by the attention blocks and the token-level losses.

Convention (as in `mmer.data.batch`): masks are bool, True = real token. A sample whose mask is all False (a
missing modality, or a fully padded sequence) must give finite values and finite gradients everywhere: a plain
softmax over an all -inf row is NaN in the forward pass *and* poisons the backward pass even when the result is
later replaced, so these helpers never build such a row.

`masked_mean` lives in `mmer.data.pooling` and is re-exported here so model code has one import for all of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmer.data.pooling import masked_mean

__all__ = ["additive_key_mask", "check_mask", "masked_mean", "masked_softmax", "masked_token_mean"]

# BERT's additive mask value: large enough that exp() underflows to exactly 0 next to any real token, small
# enough that a row with no real key stays finite (it becomes a uniform average instead of NaN).
BERT_MASK_VALUE = -10000.0


def check_mask(mask: Tensor, x: Tensor) -> None:
    """Raise a clear error unless `mask` is a bool [B, L] matching x [B, L, ...]."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = real token), got dtype {mask.dtype}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the features have [B, L] = {tuple(x.shape[:2])}")


def additive_key_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """bool [B, L] -> float [B, 1, 1, L]: 0 at real keys, -10000 at padding, as BERT's (1 - mask) * -10000."""
    return (~mask).to(dtype)[:, None, None, :] * BERT_MASK_VALUE


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of `scores` over `dim` with masked positions excluded (weight exactly 0).

    `mask` must broadcast to `scores`. A slice with no True position returns all zeros (not NaN) and passes a
    zero gradient back.
    """
    mask = mask.expand_as(scores)
    has_any = mask.any(dim=dim, keepdim=True)  # [..., 1, ...]
    safe = mask | ~has_any  # a fully masked slice becomes an ordinary (later discarded) softmax
    weights = torch.softmax(scores.masked_fill(~safe, float("-inf")), dim=dim)
    return weights * has_any.to(weights.dtype)


def masked_token_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of per-token values [B, L] over real tokens (all tokens when `mask` is None); 0 when none is real."""
    if mask is None:
        return values.mean()
    w = mask.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1.0)
