"""Lightning Fabric set-up and the collectives the engine needs.

Fabric chooses the device, launches data-parallel processes and applies the precision setting. The model is
*not* wrapped in DistributedDataParallel: models here may run several backward passes per step (AMP) or keep
per-process queues (CARAT, RAMer), which DDP's one-backward-per-forward reducer does not support. Instead every
process accumulates its own gradients for the whole step and the engine averages them with one flattened
all-reduce just before the optimizer step — exactly DDP's arithmetic, for any training step.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import torch
from lightning_fabric import Fabric
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from mmer.config import PRECISIONS, TrainConfig
from mmer.errors import ConfigError

# Fabric's all_gather calls a torch function that warns on every call; the result is correct.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_gather is deprecated")


def make_fabric(cfg: TrainConfig) -> Fabric:
    accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}[cfg.device]
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available; use --device cpu or auto")
    if cfg.device == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    parallel = cfg.devices * cfg.num_nodes > 1
    if cfg.precision == "16-mixed" and accelerator == "cpu":
        raise ConfigError("train.precision '16-mixed' needs a CUDA device; on CPU use '32' or 'bf16'")
    return Fabric(
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy="ddp" if parallel else "auto",
        precision=PRECISIONS[cfg.precision],  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def lightning_banners(shown: bool) -> Iterator[None]:
    """Let Lightning print its set-up lines (precision, DDP initialisation) only if `shown` (not under --quiet)."""
    logger = logging.getLogger("lightning_fabric")
    level = logger.level
    if not shown:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def broadcast_parameters(fabric: Fabric, model: nn.Module) -> None:
    """Make every process start from rank 0's parameters and buffers."""
    if fabric.world_size == 1:
        return
    tensors = [t.data for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    flat = fabric.broadcast(_flatten_dense_tensors(tensors), src=0)
    for t, synced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        t.copy_(synced)


def average_gradients(fabric: Fabric, model: nn.Module) -> None:
    """Mean of every process's accumulated gradients, in one all-reduce."""
    if fabric.world_size == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:  # a branch unused on this process this step: contributes zeros
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = fabric.all_reduce(_flatten_dense_tensors(grads), reduce_op="mean")
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def gather_rows(fabric: Fabric, index: Tensor, rows: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """Collect (index [n], rows [n, C]) from every process; pads uneven shards with index -1 and drops them."""
    if fabric.world_size == 1:
        return index, rows
    per_rank = -(-total // fabric.world_size)
    pad = per_rank - len(index)
    index = torch.cat([index, index.new_full((pad,), -1)])
    rows = torch.cat([rows, rows.new_zeros((pad, rows.shape[1]))])
    all_index = fabric.all_gather(index.to(fabric.device)).reshape(-1).cpu()
    all_rows = fabric.all_gather(rows.to(fabric.device)).reshape(-1, rows.shape[1]).cpu()
    keep = all_index >= 0
    return all_index[keep], all_rows[keep]
