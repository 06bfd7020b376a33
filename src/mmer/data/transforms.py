"""Missing-modality transforms: how robustness to absent modalities is measured.

A dropped modality gets an all-False mask *and* zero features, i.e. exactly what the official loaders hand a
model for an absent modality (MEmoR non-speakers), so models that ignore masks are tested fairly too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mmer.data.batch import Batch
from mmer.errors import ConfigError, unknown_name


def drop_modalities(batch: Batch, names: Iterable[str]) -> Batch:
    """Remove the named modalities from every sample."""
    names = list(names)
    for name in names:
        if name not in batch.features:
            raise ConfigError(unknown_name("modality to drop", name, batch.features))
    features = dict(batch.features)
    masks = dict(batch.masks)
    for name in names:
        features[name] = torch.zeros_like(features[name])
        masks[name] = torch.zeros_like(masks[name])
    return batch.replace(features=features, masks=masks)


def drop_at_rate(batch: Batch, rate: float, generator: torch.Generator) -> Batch:
    """Drop each (sample, modality) independently with probability `rate`, keeping at least one modality.

    A sample whose draw removes every modality it has keeps one of them, chosen uniformly, so the task stays
    defined. The draw depends only on `generator` and the batch shape (seed it per batch for repeatability).
    """
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"missing rate must be in [0, 1), got {rate}")
    names = list(batch.features)
    present = batch.present().cpu()  # [B, M]
    drop = torch.rand(present.shape, generator=generator) < rate  # [B, M]
    kept = present & ~drop
    lost_all = present.any(dim=1) & ~kept.any(dim=1)  # [B]
    if lost_all.any():
        # pick one of the sample's present modalities uniformly: random scores, masked argmax
        scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
        rescue = torch.zeros_like(present)
        rescue[torch.arange(len(present)), scores.argmax(dim=1)] = True
        kept |= rescue & lost_all[:, None]
    dropped = (present & ~kept).to(batch.labels.device)  # [B, M]
    features, masks = dict(batch.features), dict(batch.masks)
    for j, name in enumerate(names):
        keep = ~dropped[:, j]  # [B]
        features[name] = features[name] * keep[:, None, None].to(features[name].dtype)
        masks[name] = masks[name] & keep[:, None]
    return batch.replace(features=features, masks=masks)
