"""The "stack" mode composes `iterations` rotate-then-interleave rounds, each with its own offset."""

from __future__ import annotations

import itertools

import torch

from mmer.nn.shuffle import shuffle_indices, stack_interleave


def _two_round_set(n: int, stacks: int) -> set[tuple[int, ...]]:
    inter = stack_interleave(n, stacks).tolist()
    out = set()
    for o1, o2 in itertools.product(range(n), repeat=2):
        p1 = [(inter[i] + o1) % n for i in range(n)]
        out.add(tuple(p1[(inter[i] + o2) % n] for i in range(n)))
    return out


def test_stack_sample_permutations_are_two_independent_rounds():
    b, m, c = 8, 2, 64
    g = torch.Generator().manual_seed(0)
    s, _ = shuffle_indices(b, m, c, "stack", generator=g, sample_stacks=4, iterations=2, modality_wise=False)
    drawn = {tuple(s[:, mm, l].tolist()) for mm in range(m) for l in range(c)}  # pi_{l,m}
    allowed = _two_round_set(b, 4)
    assert drawn <= allowed
    assert len(drawn) > b  # one round (or a second round without its own offset) reaches at most n permutations


def test_stack_modality_permutations_are_two_independent_rounds():
    b, m, c = 16, 4, 32
    g = torch.Generator().manual_seed(1)
    _, k = shuffle_indices(b, m, c, "stack", generator=g, modality_stacks=2, iterations=2, sample_wise=False)
    drawn = {tuple(k[bb, :, l].tolist()) for bb in range(b) for l in range(c)}  # sigma_{l,b}
    assert drawn <= _two_round_set(m, 2)
    assert len(drawn) > m
    for perm in drawn:
        assert sorted(perm) == list(range(m))
