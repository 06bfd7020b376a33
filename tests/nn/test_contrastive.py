import pytest
import torch
import torch.nn.functional as F

from mmer.errors import ConfigError
from mmer.nn.contrastive import QueueSupConLoss, modality_label_polarity_ids, supcon_loss


def brute_force(raw_batch, batch_ids, queue, queue_ids, anchors, tau):
    """Per-anchor formula, one anchor at a time, differentiated by autograd (float64)."""
    f = torch.cat([F.normalize(raw_batch, dim=-1), queue])
    ids = torch.cat([batch_ids, queue_ids]).tolist()
    n_anchor = raw_batch.shape[0] if anchors == "batch" else f.shape[0]
    losses, with_pos = [], 0
    for i in range(n_anchor):
        others = [j for j in range(f.shape[0]) if j != i]
        pos = [j for j in others if ids[j] == ids[i]]
        if not pos:
            losses.append(f.new_zeros(()))
            continue
        with_pos += 1
        log_z = torch.logsumexp(torch.stack([f[i] @ f[j] / tau for j in others]), 0)
        losses.append(-torch.stack([f[i] @ f[p] / tau - log_z for p in pos]).mean())
    total = torch.stack(losses).sum()
    return total / (max(with_pos, 1) if anchors == "batch" else n_anchor)


def make_case(seed=0, n=10, k=7, d=5):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 4, 5])[:n]  # ids 2, 3 and 5 have no positive in the batch
    queue = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=-1)
    queue_ids = torch.tensor([3, 0, 9, 9, 7, 1, 8])[:k]  # gives 3 a positive; 9 pairs inside the queue; 7, 8 alone
    return raw, ids, queue, queue_ids


@pytest.mark.parametrize("anchors", ["batch", "pool"])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("with_queue", [True, False])
def test_loss_and_gradient_match_brute_force(anchors, chunk, with_queue):
    raw, ids, queue, queue_ids = make_case()
    if not with_queue:
        queue, queue_ids = queue[:0], queue_ids[:0]
    raw_a = raw.clone().requires_grad_(True)
    expected = brute_force(raw_a, ids, queue, queue_ids, anchors, 0.07)
    expected.backward()
    raw_b = raw.clone().requires_grad_(True)
    feats = F.normalize(raw_b, dim=-1)
    loss = supcon_loss(feats, ids, queue, queue_ids, anchors=anchors, temperature=0.07, chunk_size=chunk)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(raw_b.grad, raw_a.grad)


def test_anchor_modes_differ_and_queue_gets_no_gradient():
    raw, ids, queue, queue_ids = make_case()
    f = F.normalize(raw, dim=-1)
    q = queue.clone().requires_grad_(True)
    batch_loss = supcon_loss(f, ids, q, queue_ids, anchors="batch")
    pool_loss = supcon_loss(f, ids, q, queue_ids, anchors="pool")
    assert not torch.isclose(batch_loss, pool_loss)
    assert not q.requires_grad or q.grad is None


def test_no_positive_anywhere_gives_zero_not_nan():
    f = F.normalize(torch.randn(4, 3, dtype=torch.float64), dim=-1).requires_grad_(True)
    loss = supcon_loss(f, torch.arange(4), anchors="batch")
    loss.backward()
    assert loss.item() == 0.0 and torch.all(f.grad == 0)
    single = F.normalize(torch.randn(1, 3), dim=-1).requires_grad_(True)
    out = supcon_loss(single, torch.tensor([0]), anchors="pool")
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(single.grad).all()


def test_class_ids_are_modality_label_polarity():
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ids = modality_label_polarity_ids(y, view_modalities=[0, 1, 2, 0])
    assert ids.shape == (2, 4, 2)
    for b in range(2):
        for v, m in enumerate([0, 1, 2, 0]):
            for j in range(2):
                assert ids[b, v, j] == j + 2 * (2 * m + 1 - int(y[b, j]))
    assert ids.unique().tolist() == list(range(2 * 3 * 2))  # every (modality, label, polarity) once: 0..2MC-1


def test_queue_fifo_wraps_and_keeps_newest():
    torch.manual_seed(0)
    sc = QueueSupConLoss(dim=2, queue_size=5)
    rows = F.normalize(torch.randn(12, 2), dim=-1)
    ids = torch.arange(12)
    sc.enqueue(rows[:3], ids[:3])
    assert int(sc.queue_ptr) == 3 and int(sc.queue_filled) == 3
    sc.enqueue(rows[3:7], ids[3:7])  # wraps: slots 3, 4, 0, 1
    assert int(sc.queue_ptr) == 2 and int(sc.queue_filled) == 5
    assert sc.queue_ids.tolist() == [5, 6, 2, 3, 4]
    torch.testing.assert_close(sc.queue[0], rows[5])
    sc.enqueue(rows[7:14], ids[7:14])  # 5 rows = whole queue from the pointer
    assert sc.queue_ids.tolist() == [10, 11, 7, 8, 9] and int(sc.queue_ptr) == 2
    big = QueueSupConLoss(dim=2, queue_size=3)
    big.enqueue(rows[:8], ids[:8])  # more rows than slots: the newest 3 stay, in FIFO positions
    assert sorted(big.queue_ids.tolist()) == [5, 6, 7] and int(big.queue_ptr) == 8 % 3
    assert big.queue_ids[(int(big.queue_ptr) - 1) % 3] == 7


def test_forward_uses_queue_before_enqueue_and_stores_detached_normalised_rows():
    torch.manual_seed(0)
    sc = QueueSupConLoss(dim=3, queue_size=8)
    x1 = torch.randn(4, 3, requires_grad=True)
    ids = torch.tensor([0, 0, 1, 1])
    loss1 = sc(x1, ids)
    torch.testing.assert_close(loss1, supcon_loss(F.normalize(x1, dim=-1), ids))  # empty queue excluded
    assert int(sc.queue_filled) == 4 and not sc.queue.requires_grad and sc.queue.grad_fn is None
    torch.testing.assert_close(sc.queue[:4], F.normalize(x1.detach(), dim=-1))
    x2 = torch.randn(4, 3)
    loss2 = sc(x2, ids, enqueue=False)
    expected = supcon_loss(F.normalize(x2, dim=-1), ids, sc.queue[:4], ids)
    torch.testing.assert_close(loss2, expected)
    assert int(sc.queue_filled) == 4
    assert {"queue", "queue_ids", "queue_ptr", "queue_filled"} <= set(sc.state_dict())


def test_code_initialised_queue():
    torch.manual_seed(0)
    sc = QueueSupConLoss(dim=4, queue_size=6, queue_init="code", anchors="pool")
    torch.testing.assert_close(sc.queue.norm(dim=0), torch.ones(4))  # column-normalised, as the official code
    assert int(sc.queue_filled) == 6 and sc.queue_ids.unique().numel() == 6 and (sc.queue_ids < 0).all()
    x = torch.randn(3, 4, dtype=torch.float32)
    ids = torch.tensor([0, 0, 1])
    loss = sc(x, ids, enqueue=False)
    # random rows are negatives only; as pool anchors they have no positive but count in the mean (9 rows)
    f = F.normalize(x, dim=-1)
    expected = supcon_loss(f, ids, sc.queue, sc.queue_ids, anchors="batch") * 2 / 9
    torch.testing.assert_close(loss, expected)


def test_invalid_options_and_ids():
    with pytest.raises(ConfigError, match="anchors"):
        QueueSupConLoss(dim=2, anchors="all")
    with pytest.raises(ConfigError, match="queue_init"):
        QueueSupConLoss(dim=2, queue_init="random")
    with pytest.raises(ValueError, match=">= 0"):
        QueueSupConLoss(dim=2)(torch.randn(2, 2), torch.tensor([0, -1]))


def dense_reference(f, ids, n_batch, anchors, tau):
    """Vectorised full-matrix version of the per-anchor formula (for larger float32 checks)."""
    n_anchor = n_batch if anchors == "batch" else f.shape[0]
    sim = f[:n_anchor] @ f.T / tau
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(n_anchor), torch.arange(n_anchor)] = True
    pos = (ids[:n_anchor, None] == ids[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), 1, keepdim=True)
    npos = pos.sum(1)
    per = -(log_prob * pos).sum(1) / npos.clamp(min=1)
    return per.sum() / ((npos > 0).sum() if anchors == "batch" else n_anchor)


@pytest.mark.parametrize("anchors", ["batch", "pool"])
def test_float32_accuracy_at_moderate_size(anchors):
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(200, 16, generator=g)
    ids = torch.randint(0, 12, (200,), generator=g)
    queue = F.normalize(torch.randn(300, 16, generator=g), dim=-1)
    queue_ids = torch.randint(0, 14, (300,), generator=g)
    raw32 = raw.clone().requires_grad_(True)
    loss = supcon_loss(F.normalize(raw32, dim=-1), ids, queue, queue_ids, anchors=anchors, chunk_size=64)
    loss.backward()
    raw64 = raw.double().requires_grad_(True)
    f64 = torch.cat([F.normalize(raw64, dim=-1), queue.double()])
    expected = dense_reference(f64, torch.cat([ids, queue_ids]), 200, anchors, 0.07)
    expected.backward()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(raw32.grad.double(), raw64.grad, rtol=1e-3, atol=1e-4 * raw64.grad.abs().max().item())


def test_runs_in_float32_under_bf16_autocast():
    raw, ids, queue, queue_ids = make_case()
    f = F.normalize(raw.float(), dim=-1).requires_grad_(True)
    exact = supcon_loss(f, ids, queue.float(), queue_ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = supcon_loss(f, ids, queue.float(), queue_ids)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact)
