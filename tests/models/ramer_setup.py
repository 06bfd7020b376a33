"""Tiny RAMer set-up shared by test_ramer.py and test_ramer_contracts.py: a small config, the model on a bundle, a
first batch, a batch with modalities missing, and training mode without dropout."""

from __future__ import annotations

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import DatasetBundle
from mmer.models.ramer import RAMer, RAMerConfig

TINY = dict(
    hidden_size=16, num_heads=2, intermediate_size=16, num_layers=1, personality_layers=1, latent_size=8,
    queue_size=64, classifier_hidden=16, dropout=0.0, attention_dropout=0.0, specific_dropout=0.0, common_dropout=0.0,
)  # fmt: skip


def model_for(bundle: DatasetBundle, **options: object) -> RAMer:
    torch.manual_seed(0)
    return RAMer(RAMerConfig(**{**TINY, **options}), bundle.spec)


def first_batch(bundle: DatasetBundle, split: str = "train", n: int = 8) -> Batch:
    data = bundle.splits[split]
    return data.batch(torch.arange(min(n, len(data))))


def with_gaps(batch: Batch) -> Batch:
    """Samples 0-1 lack audio, sample 2 text and sample 3 visual (masks False, zeros); the rest have everything."""
    masks = {m: v.clone() for m, v in batch.masks.items()}
    for m, rows in (("audio", [0, 1]), ("text", [2]), ("visual", [3])):
        masks[m][rows] = False
    return batch.replace(features={m: x * masks[m][..., None] for m, x in batch.features.items()}, masks=masks)


def no_dropout(model: RAMer) -> RAMer:
    """Training mode with every dropout at 0 (also the discriminator's fixed 0.1): a forward pass repeats exactly."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model
