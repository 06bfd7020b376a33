"""The toy batch the model tests share: right-padded sequences of random lengths, one sample missing a modality."""

from __future__ import annotations

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec


def padded_batch(spec: DataSpec, b: int, seed: int = 0, fixed_labels: bool = True) -> Batch:
    """Sample 0 is full length, sample 2 lacks the second modality; with `fixed_labels` sample 0 has every label
    and sample 1 none (so both polarities of every label occur)."""
    g = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    for i, m in enumerate(spec.modalities):
        lengths = torch.randint(2, m.max_len + 1, (b,), generator=g)
        lengths[0] = m.max_len
        mask = torch.arange(m.max_len)[None] < lengths[:, None]  # [B, L]
        if i == 1:
            mask[2] = False
        features[m.name] = torch.randn(b, m.max_len, m.dim, generator=g) * mask[..., None]
        masks[m.name] = mask
    labels = (torch.rand(b, spec.num_labels, generator=g) < 0.4).float()  # [B, C]
    if fixed_labels:
        labels[0] = 1.0
        labels[1] = 0.0
    return Batch(features, masks, labels, [str(i) for i in range(b)], torch.arange(b))
