"""The model/step interface: micro-batch refusal, loss-scale reset, chunk scaling, frozen params."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.engine.context import StepContext, run_training_step
from mmer.models.base import MMERModel, ModelOutput
from tests.models.helpers import padded_batch

SPEC = DataSpec("toy", ("a", "b"), (ModalitySpec("text", 3, 4),))


class _Fabric:
    """Just what StepContext needs: a backward that records the losses it was given."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        self.losses.append(float(loss.detach()))
        loss.backward(retain_graph=retain_graph)


class _Tiny(MMERModel):
    def __init__(self) -> None:
        super().__init__(SimpleNamespace(threshold=0.5), SPEC)
        self.linear = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)  # named as the encoders' LayerNorms are
        self.fail_on_size: int | None = None

    def forward(self, batch: Batch) -> ModelOutput:
        if self.fail_on_size is not None and batch.size == self.fail_on_size:
            raise RuntimeError("boom")
        logits = self.norm(self.linear(batch.features["text"].mean(1)))
        bce = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
        return ModelOutput(torch.sigmoid(logits), {"bce": bce})


class _ReadsGradients(_Tiny):
    supports_micro_batches = False


def _ctx(fabric: _Fabric) -> StepContext:
    return StepContext(fabric, 0, 0, 1)  # type: ignore[arg-type]


def test_a_model_that_reads_gradients_is_refused_only_when_chunked():
    batch = padded_batch(SPEC, 5)
    model = _ReadsGradients()
    with pytest.raises(ValueError, match="cannot run a step in micro-batches"):
        run_training_step(model, batch, _ctx(_Fabric()), micro_batch=2)
    assert "bce" in "".join(run_training_step(model, batch, _ctx(_Fabric()), micro_batch=0))
    assert "loss" in run_training_step(model, batch, _ctx(_Fabric()), micro_batch=5)  # one chunk = plain step


def test_chunks_are_scaled_by_their_share_and_the_scale_is_reset_even_on_error():
    torch.manual_seed(0)
    batch = padded_batch(SPEC, 5)
    model, fabric = _Tiny(), _Fabric()
    ctx = _ctx(fabric)
    logs = run_training_step(model, batch, ctx, micro_batch=2)
    assert ctx.loss_scale == 1.0 and ctx.backward_calls == 3
    with torch.no_grad():
        per_chunk = [float(model(c).losses["bce"]) for c in batch.chunks(2)]
        whole = float(model(batch).losses["bce"])
    assert fabric.losses == pytest.approx([v * s / 5 for v, s in zip(per_chunk, (2, 2, 1))])
    assert logs["loss_bce"] == pytest.approx(sum(fabric.losses)) and logs["loss"] == pytest.approx(logs["loss_bce"])
    assert logs["loss_bce"] == pytest.approx(whole, rel=1e-5)  # a mean over samples: chunking is exact
    model.fail_on_size = 1  # the last chunk raises
    ctx = _ctx(_Fabric())
    with pytest.raises(RuntimeError, match="boom"):
        run_training_step(model, batch, ctx, micro_batch=2)
    assert ctx.loss_scale == 1.0


def test_param_groups_leave_out_frozen_parameters_and_exempt_bias_and_layernorm():
    model = _Tiny()
    model.linear.bias.requires_grad_(False)
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.linear.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model.norm.weight), id(model.norm.bias)}
