"""The batch order the engine trains and evaluates in (`mmer.data.loader`), checked sample by sample."""

from __future__ import annotations

import pytest
import torch

from mmer.data.loader import eval_batches, num_train_batches, train_batches
from tests.engine.toy_data import make_split


def order(split, *args, **kwargs) -> list[int]:
    return [i for batch in train_batches(split, *args, **kwargs) for i in batch.index.tolist()]


def test_training_order_is_reshuffled_each_epoch_and_repeats_for_the_same_seed_and_epoch():
    """A resumed run must see the same order as the uninterrupted one, and each epoch a new permutation."""
    split = make_split(40, 0)
    assert order(split, 8, seed=3, epoch=1) == order(split, 8, seed=3, epoch=1)
    assert order(split, 8, seed=3, epoch=1) != order(split, 8, seed=3, epoch=2)
    assert order(split, 8, seed=3, epoch=1) != order(split, 8, seed=4, epoch=1)
    assert sorted(order(split, 8, seed=3, epoch=2)) == list(range(40))


@pytest.mark.parametrize("world", [2, 3])
def test_processes_train_on_disjoint_equal_slices_of_the_epoch(world):
    """Data-parallel processes must not train on the same samples twice in one epoch, and stay in lockstep."""
    split = make_split(41, 0)
    shards = [order(split, 4, seed=0, epoch=0, rank=r, world=world, drop_last=False) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 41 // world
    everything = [i for s in shards for i in s]
    assert len(set(everything)) == len(everything)


def test_drop_last_drops_only_the_incomplete_last_batch_and_the_step_count_agrees():
    """data.drop_last (the official codes' default) drops the last partial batch; the schedule counts the same steps."""
    split = make_split(10, 0)
    sizes = {d: [b.size for b in train_batches(split, 4, 0, 0, drop_last=d)] for d in (True, False)}
    assert sizes == {True: [4, 4], False: [4, 4, 2]}
    assert num_train_batches(10, 4, drop_last=True) == 2 and num_train_batches(10, 4, drop_last=False) == 3


def test_evaluation_covers_every_sample_once_in_order_across_processes():
    """Validation drives model selection: no sample may be dropped, doubled or padded."""
    split = make_split(11, 0)
    for world in (1, 2, 3):
        seen = [i for r in range(world) for b in eval_batches(split, 4, r, world) for i in b.index.tolist()]
        assert sorted(seen) == list(range(11))
    assert [i for b in eval_batches(split, 4) for i in b.index.tolist()] == list(range(11))
    assert torch.equal(next(iter(eval_batches(split, 4, 1, 2))).index, torch.tensor([1, 3, 5, 7]))
