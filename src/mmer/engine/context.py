"""What a model's `training_step` may do: run backward passes, weigh and check losses; and the engine's step.

`run_training_step` is what the trainer (and the speed benchmarks) call once per optimizer step. With
`train.micro_batch` = k > 0 it runs the model's `training_step` on chunks of at most k samples, one after the
other, and `ctx.backward` scales each chunk's loss by its share of the batch's samples. The gradients add up to
those of the whole batch whenever every loss is a mean over samples, while only one chunk's activations are alive
at a time: the same update with the memory of a smaller batch. Losses that a model declares as sums over the batch's
samples (`MMERModel.summed_losses`) are exact too. Losses that average over something else (real
tokens of a batch, samples that have a modality) are averaged per chunk and weighted by samples, a close but not
exact match when chunks differ in lengths or missing modalities; contrastive terms and queues see chunks, not
the batch. Dropout draws differ from an unchunked run. Models whose step reads gradients between its backward
passes (AMP's perturbation direction) cannot be chunked and set `supports_micro_batches = False`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING

from torch import Tensor

from mmer.errors import DivergenceError

if TYPE_CHECKING:
    from lightning_fabric import Fabric

    from mmer.data.batch import Batch
    from mmer.models.base import MMERModel


class StepContext:
    """Handed to `MMERModel.training_step`; one per optimizer step."""

    def __init__(self, fabric: Fabric, epoch: int, step: int, total_steps: int):
        self.fabric = fabric
        self.epoch = epoch  # 0-based
        self.step = step  # optimizer steps taken before this one
        self.total_steps = total_steps
        self.backward_calls = 0
        self.loss_scale = 1.0  # share of the batch's samples in the chunk being run (`run_training_step`)

    def backward(self, loss: Tensor, *, retain_graph: bool = False) -> None:
        """Accumulate gradients of `loss` (handles mixed-precision loss scaling and micro-batch chunks)."""
        self.fabric.backward(loss if self.loss_scale == 1.0 else loss * self.loss_scale, retain_graph=retain_graph)
        self.backward_calls += 1

    def per_batch(self, losses: dict[str, Tensor], summed: Collection[str]) -> dict[str, Tensor]:
        """`losses` with the components named in `summed` (sums over the batch's samples, not means) divided by the
        chunk's share: after `backward`'s scaling each chunk then adds its own sum, and the logged value is the
        batch's sum. Unchanged when the step is not chunked."""
        if self.loss_scale == 1.0 or not summed:
            return losses
        return {k: v / self.loss_scale if k in summed else v for k, v in losses.items()}

    def weighted_total(self, losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
        """sum_k weights.get(k, 1) * losses[k]; raises DivergenceError naming a non-finite component."""
        if not losses:
            raise RuntimeError("training forward returned no loss components")
        self.check_finite(losses)
        total = None
        for name, value in losses.items():
            w = weights.get(name, 1.0)
            if w == 0.0:
                continue
            total = w * value if total is None else total + w * value
        if total is None:
            raise RuntimeError("every loss component has weight 0; nothing to train")
        return total

    def check_finite(self, losses: dict[str, Tensor]) -> None:
        for name, value in losses.items():
            v = float(value.detach())
            if not math.isfinite(v):
                raise DivergenceError(
                    f"loss component '{name}' is {v} at epoch {self.epoch + 1}, step {self.step + 1}; "
                    "training stopped (lower train.lr, check the inputs for extreme values, or set train.grad_clip)"
                )

    @staticmethod
    def logged(losses: dict[str, Tensor], total: Tensor | None = None) -> dict[str, float]:
        """Plain floats for history.csv: every component, plus the weighted total as 'loss'."""
        out = {f"loss_{k}": float(v.detach()) for k, v in losses.items()}
        if total is not None:
            out["loss"] = float(total.detach())
        return out


def run_training_step(model: MMERModel, batch: Batch, ctx: StepContext, micro_batch: int = 0) -> dict[str, float]:
    """The model's `training_step` on `batch`, in chunks of at most `micro_batch` samples when that is > 0.

    Returns the logged values averaged over the batch's samples (per-chunk values weighted by chunk size).
    """
    if micro_batch <= 0 or micro_batch >= batch.size:
        return model.training_step(batch, ctx)
    if not model.supports_micro_batches:
        raise ValueError(f"{type(model).__name__} cannot run a step in micro-batches (its step reads gradients between backward passes)")
    logs: dict[str, float] = defaultdict(float)
    try:
        for chunk in batch.chunks(micro_batch):
            ctx.loss_scale = chunk.size / batch.size
            for key, value in model.training_step(chunk, ctx).items():
                logs[key] += value * ctx.loss_scale
    finally:
        ctx.loss_scale = 1.0
    return dict(logs)
