"""`report-probe`: the late-fusion baseline plus an `analysis()` that returns every documented key, computed
from its real activations, so the report's analysis figures can be tested before the flagship models land.

- common / reconstructed: each modality's pooled encoder output [B, M, d]; specific: its pooled input projection
- modality_label: each modality's additive share of the linear head's logits [B, M, C] (exact: logits = sum + bias)
- label_correlation: cosine similarity of the head's label weight vectors [C, C]
- discriminator_probs(_specific): softmax over modalities of a fixed random linear probe [B, M, M]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmer.data.batch import Batch
from mmer.data.pooling import masked_mean
from mmer.models.baseline import BaselineConfig, LateFusionBaseline
from mmer.registry import MODELS


class ReportProbe(LateFusionBaseline):
    def analysis(self, batch: Batch) -> dict[str, torch.Tensor]:
        encoded, projected, shares = [], [], []
        offset = 0
        for m, x in batch.features.items():
            mask = batch.masks[m]  # [B, L]
            h0 = self.inputs[m](x) + self.positions[m][: x.shape[1]]  # [B, L, d]
            keys = mask.clone()
            keys[~mask.any(dim=1), 0] = True
            h = self.encoders[m](h0, src_key_padding_mask=~keys)
            pooled = torch.cat([masked_mean(h, mask), mask.any(dim=1, keepdim=True).to(h.dtype)], dim=1)  # [B, d+1]
            width = pooled.shape[1]
            shares.append(pooled @ self.head.weight[:, offset : offset + width].T)  # [B, C]
            offset += width
            encoded.append(masked_mean(h, mask))
            projected.append(masked_mean(h0, mask))
        common = torch.stack(encoded, dim=1)  # [B, M, d]
        specific = torch.stack(projected, dim=1)
        probe = torch.randn(common.shape[2], common.shape[1], generator=torch.Generator().manual_seed(0))
        w = F.normalize(self.head.weight, dim=1)
        return {
            "common": common,
            "specific": specific,
            "reconstructed": common,
            "modality_label": torch.stack(shares, dim=1),
            "label_correlation": w @ w.T,
            "discriminator_probs": torch.softmax(common @ probe, dim=-1),
            "discriminator_probs_specific": torch.softmax(specific @ probe, dim=-1),
        }


if "report-probe" not in MODELS:
    MODELS.register("report-probe", options=BaselineConfig, summary="baseline with a full analysis() (report tests)")(ReportProbe)
