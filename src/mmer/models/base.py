"""The interface every model implements.

A model is an `nn.Module` built from `(cfg, spec)`:
- `forward(batch) -> ModelOutput`: `probs` [B, C] (what the prediction rule thresholds) and, in training mode,
  the *unweighted* loss components in `losses` (a dict name -> scalar tensor).
- `loss_weights()`: the weight of each component (from the config); the default `training_step` forms
  sum(w * loss), checks every component is finite (naming the bad one otherwise) and calls `ctx.backward` once.
  Models with several backward passes per step (AMP) override `training_step` and call `ctx.backward` as often
  as they need; the engine then clips, steps the optimizer and the schedule. A model whose step reads the
  gradients between its backward passes sets `supports_micro_batches = False` (`train.micro_batch` then refuses it).
- `analysis(batch)`: the one hook the report's plots use (eval mode, no grad). Every key is optional; a model
  returns what it has. M follows `batch.modalities` order, C the label order, D any feature size:
    "common"              float [B, M, D]  commonality representation of each modality (e.g. C^m pooled)
    "specific"            float [B, M, D]  specificity representation of each modality (e.g. S^m / P^m pooled)
    "reconstructed"       float [B, M, D]  reconstruction-space embedding of each modality (e.g. latent of X_gamma)
    "modality_label"      float [B, M, C]  per-modality evidence (logit) for each label before fusion; the report
                                           plots which modality each label's prediction relies on
    "label_correlation"   float [C, C]     learned label-to-label dependency (e.g. label self-attention weights)
    "discriminator_probs" float [B, M, M]  modality discriminator's distribution for each modality's common features
    "discriminator_probs_specific"
                          float [B, M, M]  the same for the specific features (TAILOR Fig. 5, second panel)
- `param_groups(weight_decay)`: optimizer groups; the default exempts biases and LayerNorm parameters from
  weight decay, as BERT-style training does.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec

if TYPE_CHECKING:
    from mmer.engine.context import StepContext


@dataclass
class ModelOutput:
    probs: Tensor  # float [B, C], probability of each label
    losses: dict[str, Tensor] = field(default_factory=dict)  # unweighted scalar components (training only)


class MMERModel(nn.Module, abc.ABC):
    """Base class of every model in the registry."""

    supports_micro_batches: ClassVar[bool] = True  # see engine/context.py, run_training_step

    def __init__(self, cfg: Any, spec: DataSpec):
        super().__init__()
        self.cfg = cfg
        self.spec = spec

    @property
    def threshold(self) -> float:
        return float(self.cfg.threshold)

    @abc.abstractmethod
    def forward(self, batch: Batch) -> ModelOutput:
        """Probabilities for every label; in training mode also the unweighted loss components."""

    def loss_weights(self) -> dict[str, float]:
        """Weight of each loss component; components not listed have weight 1."""
        return {}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        out = self(batch)
        losses = ctx.per_batch(out.losses, self.summed_losses())
        total = ctx.weighted_total(losses, self.loss_weights())
        ctx.backward(total)
        return ctx.logged(losses, total)

    def summed_losses(self) -> frozenset[str]:
        """Loss components that sum over the batch's samples instead of averaging (exact under micro-batches)."""
        return frozenset()

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        return self(batch).probs

    def analysis(self, batch: Batch) -> dict[str, Tensor]:
        return {}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if is_no_decay(name) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def is_no_decay(name: str) -> bool:
    """Biases and the encoders' LayerNorms are not decayed (the official BertAdam codes' rule: any name containing
    "bias", so also an LSTM's `bias_ih_l0`). The raw-feature input LayerNorms (`input_norm*`) are decayed, as there."""
    lowered = name.lower()
    return "bias" in lowered or "layernorm" in lowered or ".norm" in lowered or lowered.startswith("norm")
