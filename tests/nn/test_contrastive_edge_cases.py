"""SupCon values by hand, the module's temperature, queue rows paired with their ids, y = 0.5."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmer.nn.contrastive import QueueSupConLoss, modality_label_polarity_ids, supcon_loss


def _hand_loss(tau: float) -> float:
    # f0 = (1, 0), f1 = (0, 1), f2 = (-1, 0); ids [0, 0, 1]. Anchor 2 has no positive and is left out.
    # l0 = log(exp(0) + exp(-1/tau)) - 0;  l1 = log(exp(0) + exp(0)) - 0
    return (math.log(1 + math.exp(-1 / tau)) + math.log(2.0)) / 2


def test_supcon_matches_a_hand_computed_case_at_two_temperatures():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ids = torch.tensor([0, 0, 1])
    for tau in (0.5, 0.07):
        assert math.isclose(supcon_loss(f, ids, temperature=tau).item(), _hand_loss(tau), rel_tol=1e-5)


def test_queue_module_uses_its_own_temperature():
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]], requires_grad=True)  # normalised by the module
    ids = torch.tensor([0, 0, 1])
    sc = QueueSupConLoss(dim=2, queue_size=4, temperature=0.5)
    loss = sc(x, ids)
    assert math.isclose(loss.item(), _hand_loss(0.5), rel_tol=1e-5)
    assert not math.isclose(loss.item(), _hand_loss(0.07), rel_tol=1e-3)


def test_queue_rows_stay_paired_with_their_ids_when_a_batch_exceeds_the_queue():
    torch.manual_seed(0)
    rows = F.normalize(torch.randn(8, 3), dim=-1)
    ids = torch.arange(8)
    for k in (3, 5):
        sc = QueueSupConLoss(dim=3, queue_size=k)
        sc.enqueue(rows[:2], ids[:2])
        sc.enqueue(rows[2:], ids[2:])  # 6 rows: more than a queue of 3, a wrap-around for 5
        assert sorted(sc.queue_ids.tolist()) == list(range(8 - k, 8))
        for slot in range(k):
            torch.testing.assert_close(sc.queue[slot], rows[int(sc.queue_ids[slot])])


def test_a_label_of_exactly_one_half_counts_as_present():
    y = torch.tensor([[0.5, 0.49]])
    ids = modality_label_polarity_ids(y, view_modalities=[0])
    # present: j + C (2m + 1 - 1) = 0; absent: 1 + 2 (2m + 1) = 3
    assert ids.tolist() == [[[0, 3]]]
