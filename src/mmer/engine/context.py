"""What a model's `training_step` may do: run backward passes, weigh and check losses."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

from mmer.errors import DivergenceError

if TYPE_CHECKING:
    from lightning_fabric import Fabric


class StepContext:
    """Handed to `MMERModel.training_step`; one per optimizer step."""

    def __init__(self, fabric: Fabric, epoch: int, step: int, total_steps: int):
        self.fabric = fabric
        self.epoch = epoch  # 0-based
        self.step = step  # optimizer steps taken before this one
        self.total_steps = total_steps
        self.backward_calls = 0

    def backward(self, loss: Tensor, *, retain_graph: bool = False) -> None:
        """Accumulate gradients of `loss` (handles mixed-precision loss scaling)."""
        self.fabric.backward(loss, retain_graph=retain_graph)
        self.backward_calls += 1

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
