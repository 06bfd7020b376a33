"""Fixed-length summaries of a batch, for models that take one vector per sample (the classic baselines).

Per modality: the masked mean over the sample's real tokens and a presence flag. Multi-party samples add the
target token(s)' own features (masked mean over the target tokens of each modality) and the target person's
personality, so the vector says both "what happened in the clip" and "what the target person showed".
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmer.data.batch import Batch


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, L, D], mask [B, L] -> [B, D]; zeros where the mask is empty."""
    w = mask.to(x.dtype).unsqueeze(-1)  # [B, L, 1]
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def pooled_features(batch: Batch) -> Tensor:
    """[B, F] summary of every modality (and the target token for multi-party data)."""
    parts = []
    for m, x in batch.features.items():
        mask = batch.masks[m]
        parts += [masked_mean(x, mask), mask.any(dim=1, keepdim=True).to(x.dtype)]
        if batch.party is not None:
            target = mask & batch.party.target
            parts += [masked_mean(x, target), target.any(dim=1, keepdim=True).to(x.dtype)]
    if batch.personality is not None and batch.party is not None:
        parts.append(masked_mean(batch.personality, batch.party.target))
    return torch.cat(parts, dim=1)
