"""Batch iteration over a SplitData, sharded across processes.

Batches are gathered by tensor indexing (no per-sample collate). Training order is a permutation drawn from
(seed, epoch), so a resumed run sees the same order; each process takes an equal-size slice so data-parallel
steps stay in lockstep. Evaluation walks the split in order and never pads or drops: process r takes samples
r, r+W, r+2W, ... and the engine reassembles them by `Batch.index`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import SplitData


def train_batches(
    split: SplitData, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, drop_last: bool = True
) -> Iterator[Batch]:
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    per_rank = len(order) // world
    order = order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order
    stop = (len(order) // batch_size) * batch_size if drop_last and len(order) >= batch_size else len(order)
    for start in range(0, stop, batch_size):
        yield split.batch(order[start : start + batch_size])


def num_train_batches(n: int, batch_size: int, world: int = 1, drop_last: bool = True) -> int:
    per_rank = n // world
    if drop_last and per_rank >= batch_size:
        return per_rank // batch_size
    return -(-per_rank // batch_size)


def eval_batches(split: SplitData, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
    order = torch.arange(rank, len(split), world)
    for start in range(0, len(order), batch_size):
        yield split.batch(order[start : start + batch_size])
