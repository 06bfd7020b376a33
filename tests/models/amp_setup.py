"""Tiny AMP set-up shared by test_amp.py and test_amp_contracts.py: a toy data spec, a small config, a padded batch,
one training step through the engine's StepContext, and a copy of every gradient."""

from __future__ import annotations

import torch
from lightning_fabric import Fabric
from torch import nn

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.engine.context import StepContext
from mmer.models.amp import AMP
from tests.models.helpers import padded_batch

SPEC = DataSpec("toy", ("a", "b", "c"), (ModalitySpec("text", 7, 6), ModalitySpec("visual", 4, 8), ModalitySpec("audio", 5, 9)))
TINY = dict(d_model=16, num_heads=2, ffn_dim=32, encoder_layers=1)


def make_batch(spec: DataSpec = SPEC, b: int = 5, seed: int = 0) -> Batch:
    return padded_batch(spec, b, seed, fixed_labels=False)


def step(model: AMP, batch: Batch, fabric: Fabric) -> dict[str, float]:
    model.train()
    model.zero_grad(set_to_none=True)
    ctx = StepContext(fabric, 0, 0, 1)
    logs = model.training_step(batch, ctx)
    assert ctx.backward_calls >= 1
    return logs


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
