"""`baseline`: late fusion — the sanity reference every other model must beat.

One small transformer encoder per modality, masked mean-pool, concatenation, a linear head, BCE. For multi-party
data every token also gets its person's personality (projected) and a learned "target" embedding on the
prediction target, and the pooled vector of each modality is [mean over the clip; mean over the target token(s)],
so the baseline can use context but has no person/segment-structured attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmer.config import ModelConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec
from mmer.errors import ConfigError
from mmer.models.base import MMERModel, ModelOutput
from mmer.nn.masking import masked_mean
from mmer.registry import MODELS


@dataclass
class BaselineConfig(ModelConfig):
    d_model: int = 64
    num_layers: int = 1
    num_heads: int = 4
    ffn_dim: int = 128
    dropout: float = 0.1


@MODELS.register("baseline", options=BaselineConfig, summary="late fusion: per-modality transformer, mean-pool, concat, linear")
class LateFusionBaseline(MMERModel):
    def __init__(self, cfg: BaselineConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        for key in ("d_model", "num_layers", "num_heads", "ffn_dim"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(cfg, key)}")
        if cfg.d_model % cfg.num_heads:
            raise ConfigError(f"model.d_model ({cfg.d_model}) must be divisible by model.num_heads ({cfg.num_heads})")
        d = cfg.d_model
        self.inputs = nn.ModuleDict({m.name: nn.Linear(m.dim, d) for m in spec.modalities})
        self.positions = nn.ParameterDict({m.name: nn.Parameter(torch.zeros(m.max_len, d)) for m in spec.modalities})
        self.encoders = nn.ModuleDict(
            {
                m.name: nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, batch_first=True),
                    cfg.num_layers,
                    enable_nested_tensor=False,
                )
                for m in spec.modalities
            }
        )
        self.personality = nn.Linear(spec.personality_dim, d) if spec.personality_dim else None
        self.target_embedding = nn.Parameter(torch.zeros(d)) if spec.multi_party else None
        pooled = d * (2 if spec.multi_party else 1) + 1  # + presence flag
        self.head = nn.Linear(pooled * len(spec.modalities), spec.num_labels)

    def forward(self, batch: Batch) -> ModelOutput:
        pooled = []
        for m, x in batch.features.items():
            mask = batch.masks[m]  # [B, L]
            h = self.inputs[m](x) + self.positions[m][: x.shape[1]]  # [B, L, d]
            if batch.party is not None:
                if self.personality is not None and batch.personality is not None:
                    h = h + self.personality(batch.personality)
                h = h + batch.party.target.unsqueeze(-1) * self.target_embedding
            # a sample with no real token of this modality attends to nothing: give it one dummy key, pool to zero
            empty = ~mask.any(dim=1)  # [B]
            keys = mask.clone()
            keys[empty, 0] = True
            h = self.encoders[m](h, src_key_padding_mask=~keys)  # [B, L, d]
            parts = [masked_mean(h, mask)]
            if batch.party is not None:
                parts.append(masked_mean(h, mask & batch.party.target))
            parts.append((~empty).unsqueeze(1).to(h.dtype))
            pooled.append(torch.cat(parts, dim=1))
        logits = self.head(torch.cat(pooled, dim=1))  # [B, C]
        losses = {"bce": F.binary_cross_entropy_with_logits(logits, batch.labels)} if self.training else {}
        return ModelOutput(torch.sigmoid(logits), losses)
