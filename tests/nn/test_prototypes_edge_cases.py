"""The hard evaluation pattern's tie rule with distinct prototypes; y = 0.5 is a positive label."""

from __future__ import annotations

import torch

from mmer.nn.prototypes import LabelPrototypes


def test_exact_tie_chooses_the_negative_prototype_even_when_they_differ():
    protos = LabelPrototypes(1, 1, 2).eval()
    protos.positive = torch.tensor([[[1.0, 0.0]]])
    protos.negative = torch.tensor([[[0.0, 1.0]]])
    tie = protos.intrinsic(torch.tensor([[[[1.0, 1.0]]]]))  # equal similarity to both
    assert torch.equal(tie, protos.negative[None])
    closer_pos = protos.intrinsic(torch.tensor([[[[2.0, 1.0]]]]))
    assert torch.equal(closer_pos, protos.positive[None])


def test_a_label_of_one_half_updates_the_positive_prototype():
    protos = LabelPrototypes(1, 2, 2, momentum=0.9)
    latents = torch.tensor([[[[3.0, 4.0], [0.0, 2.0]]]])  # [B=1, M=1, C=2, d=2]
    protos.update(latents, torch.tensor([[0.5, 0.4999]]))
    torch.testing.assert_close(protos.positive[0, 0], torch.tensor([0.06, 0.08]))  # (1 - g) z^, z^ = (0.6, 0.8)
    torch.testing.assert_close(protos.negative[0, 0], torch.zeros(2))
    torch.testing.assert_close(protos.negative[0, 1], torch.tensor([0.0, 0.1]))
    torch.testing.assert_close(protos.positive[0, 1], torch.zeros(2))
