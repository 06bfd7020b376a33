"""Supervised contrastive loss against a FIFO queue (CARAT Eq. 6-7, RAMer Eq. 11), memory-efficient.

Pool F = [batch embeddings (with gradient); queue rows (constants)], L2-normalised, with integer class ids kappa.
For an anchor i, with s_ij = f_i . f_j / tau, A(i) = pool \\ {i} and P(i) = {p in A(i): kappa_p = kappa_i}:

    l_i = -(1/|P(i)|) sum_{p in P(i)} [ s_ip - log sum_{a in A(i)} exp(s_ia) ]      (0 when P(i) is empty)

Anchor sets (`anchors`):
- "batch" (default, the papers): anchors are the batch rows; the loss is the mean of l_i over the batch anchors
  that have at least one positive (CARAT's grouping gives every batch anchor >= 2 positives). RAMer's Eq. 11 writes
  a sum; the mean keeps the weight independent of the batch size (the code also averages).
- "pool" (the official codes, carat ref §2.9): every pool row, queue rows included, is an anchor; the loss is the
  mean over *all* pool rows, anchors without positives counting 0. Queue anchors pass gradient to the batch rows in
  their rows of the similarity matrix.

The official code materialises about ten N x N matrices (N = 9BC + K = 11 648 for MOSEI, ~5 GB). Here a custom
autograd Function walks over the anchors in chunks, keeps only the per-anchor log-partition, and recomputes each
chunk in the backward pass with the analytic gradient

    dl_i/ds_ij = softmax_{j over A(i)}(s_i)_j - 1[j in P(i)] / |P(i)|      (anchors with positives; 0 otherwise)

so peak memory is O(chunk x N) instead of O(N x N). Only the softmax term needs the N x N similarities; the
positive term goes through per-class sums (sum_{p in P(i)} f_p = S[kappa_i] - f_i), in both directions.

The official code adds 1e-12 inside the log (after subtracting the row max, self included) and to |P(i)|; those
only matter for degenerate pools and are left out.

Queue (`queue_init`): "empty" (default) — rows not yet written are not in the pool; "code" — the official
initialisation: randn(K, d) normalised along dim 0 (each *column* has unit norm) with labels that never match
anything (the code uses random floats; here distinct negative ids), all K rows in the pool from the first step.
After the loss the batch rows are written FIFO (detached; the code forgets to detach) with wrap-around.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.errors import ConfigError, unknown_name

AnchorMode = Literal["batch", "pool"]
QueueInit = Literal["empty", "code"]
ANCHOR_MODES = ("batch", "pool")
QUEUE_INITS = ("empty", "code")


def modality_label_polarity_ids(labels: Tensor, view_modalities: Sequence[int]) -> Tensor:
    """Contrastive class ids kappa [B, V, C] for V embedding views of every (sample, label).

    View v belongs to modality m = view_modalities[v]; kappa = j + C * (2m + 1 - y_bj), i.e. one class per
    (modality, label, polarity) — 2MC classes — exactly the official id (carat ref §2.9). A label counts as
    present when y >= 0.5. Flatten with `.reshape(-1)` in the same (b, v, j) order as the embeddings.
    """
    b, c = labels.shape
    m = torch.as_tensor(list(view_modalities), dtype=torch.long, device=labels.device)  # [V]
    absent = (labels < 0.5).long()  # [B, C]
    label_idx = torch.arange(c, device=labels.device)  # [C]
    return label_idx + c * (2 * m[None, :, None] + absent[:, None, :])  # [B, V, C]


def _similarities(pool: Tensor, start: int, stop: int, tau: float, columns: int | None = None) -> Tensor:
    """s [c, n] for anchors start:stop against pool rows 0..n-1 (default: all), with s_ii = -inf (i not in A(i))."""
    sim = pool[start:stop] @ pool[:columns].T  # [c, n]
    sim.div_(tau)
    local = torch.arange(stop - start, device=pool.device)
    own = local + start < sim.shape[1]
    sim[local[own], (local + start)[own]] = float("-inf")
    return sim


def _chunks(num_anchors: int, n_batch: int, chunk: int) -> list[tuple[int, int]]:
    """Anchor ranges of at most `chunk` rows that never straddle the batch/queue boundary."""
    bounds = [(0, min(n_batch, num_anchors)), (n_batch, num_anchors)]
    return [(a, min(a + chunk, hi)) for lo, hi in bounds for a in range(lo, hi, chunk)]


def _log_partition(sim: Tensor) -> Tensor:
    """log sum_j exp(s_ij) per row [c], computed in place (destroys `sim`); -inf for a row with no entry."""
    row_max = sim.max(dim=1, keepdim=True).values
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    return sim.sub_(row_max).exp_().sum(dim=1).log_() + row_max.squeeze(1)


class _ChunkedSupCon(torch.autograd.Function):
    """Sum of l_i over anchors 0..A-1 of pool = [batch; queue], divided by `denominator`; grads for the batch rows.

    Only the softmax over A(i) needs the pool x pool similarities; the positive term uses class sums:
    sum_{p in P(i)} f_p = S[kappa_i] - f_i with S[k] = sum of the pool rows of class k.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        batch: Tensor,
        queue: Tensor,
        classes: Tensor,
        num_anchors: int,
        denominator: float,
        tau: float,
        chunk: int,
    ) -> Tensor:
        pool = torch.cat([batch, queue.to(batch.dtype)], dim=0)  # [N, d]
        n_classes = int(classes.max()) + 1 if classes.numel() else 0
        class_sum = pool.new_zeros(n_classes, pool.shape[1]).index_add_(0, classes, pool)  # [K_c, d]
        class_count = torch.bincount(classes, minlength=n_classes)  # [K_c]
        anchors = pool[:num_anchors]  # [A, d]
        anchor_classes = classes[:num_anchors]
        num_pos = class_count[anchor_classes] - 1  # [A] |P(i)|
        pos_sum = (anchors * (class_sum[anchor_classes] - anchors)).sum(dim=1) / tau  # [A] sum_p s_ip
        log_z = pool.new_empty(num_anchors)  # [A]
        for a, b in _chunks(num_anchors, batch.shape[0], chunk):
            log_z[a:b] = _log_partition(_similarities(pool, a, b, tau))
        has_pos = num_pos > 0
        per_anchor = torch.where(has_pos, log_z - pos_sum / num_pos.clamp(min=1), torch.zeros_like(log_z))
        ctx.save_for_backward(pool, classes, log_z, num_pos)
        ctx.meta = (batch.shape[0], num_anchors, n_classes, denominator, tau, chunk)
        return per_anchor.sum() / denominator

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        pool, classes, log_z, num_pos = ctx.saved_tensors
        n_batch, num_anchors, n_classes, denominator, tau, chunk = ctx.meta
        # dL/ds_ij = w_i (softmax_ij - 1[j in P(i)] / |P(i)|), w_i = grad_out / denominator (0 without positives);
        # s_ij = f_i . f_j / tau, so each entry sends (w_i / tau) (...) f_j to row i and f_i to column j.
        w = torch.where(num_pos > 0, grad_out / (denominator * tau), torch.zeros_like(log_z))  # [A]
        safe_log_z = torch.where(torch.isfinite(log_z), log_z, torch.zeros_like(log_z))
        anchors, anchor_classes = pool[:num_anchors], classes[:num_anchors]
        grad = torch.zeros_like(pool[:n_batch])  # [N_b, d]; the queue is a constant
        for a, b in _chunks(num_anchors, n_batch, chunk):
            if not bool(w[a:b].any()):  # e.g. the never-matching rows of a code-initialised queue
                continue
            # a batch anchor needs its whole row (row side); a queue anchor only its batch columns (column side)
            columns = None if a < n_batch else n_batch
            probs = _similarities(pool, a, b, tau, columns).sub_(safe_log_z[a:b, None]).exp_()  # softmax over A(i)
            probs.mul_(w[a:b, None])  # [c, n]
            grad += probs[:, :n_batch].T @ anchors[a:b]  # column side
            if a < n_batch:
                grad[a:b] += probs @ pool  # row side
        # positive part, through class sums: row i gets -(w_i/|P(i)|) (S[kappa_i] - f_i); column j gets
        # -sum_{anchors i != j of class kappa_j} (w_i/|P(i)|) f_i
        pos_weight = (w / num_pos.clamp(min=1))[:, None]  # [A, 1]
        class_sum = pool.new_zeros(n_classes, pool.shape[1]).index_add_(0, classes, pool)
        weighted_sum = pool.new_zeros(n_classes, pool.shape[1]).index_add_(0, anchor_classes, pos_weight * anchors)
        n_rows = min(n_batch, num_anchors)
        row_pos = pos_weight[:n_rows] * (class_sum[classes[:n_rows]] - pool[:n_rows])
        grad[:n_rows] -= row_pos
        col_pos = weighted_sum[classes[:n_batch]]
        col_pos[:n_rows] -= pos_weight[:n_rows] * pool[:n_rows]
        grad -= col_pos
        return grad, None, None, None, None, None, None


def supcon_loss(
    batch: Tensor,
    batch_ids: Tensor,
    queue: Tensor | None = None,
    queue_ids: Tensor | None = None,
    *,
    anchors: AnchorMode = "batch",
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> Tensor:
    """Supervised contrastive loss of L2-normalised `batch` [N_b, d] (ids long [N_b]) against `queue` [K, d].

    The inputs are used as given (normalise them first); gradient flows into `batch` only. See the module
    docstring for the anchor modes. Peak extra memory is a few chunk_size x (N_b + K) matrices.
    """
    if anchors not in ANCHOR_MODES:
        raise ConfigError(unknown_name("contrastive anchors", anchors, ANCHOR_MODES))
    if batch.dim() != 2 or batch_ids.shape != batch.shape[:1]:
        raise ValueError(
            f"supcon_loss expects batch [N, d] and ids [N], got {tuple(batch.shape)} and {tuple(batch_ids.shape)}"
        )
    if batch.shape[0] == 0:
        return batch.sum() * 0.0
    if queue is None:
        queue, queue_ids = batch.new_zeros(0, batch.shape[1]), batch_ids.new_zeros(0)
    assert queue_ids is not None
    _, classes = torch.unique(torch.cat([batch_ids, queue_ids]).long(), return_inverse=True)  # [N] in 0..K_c-1
    if anchors == "batch":
        num_anchors = batch.shape[0]
        counts = torch.bincount(classes)
        denominator = max(int((counts[classes[:num_anchors]] > 1).sum()), 1)  # batch anchors with a positive
    else:
        num_anchors = batch.shape[0] + queue.shape[0]
        denominator = max(num_anchors, 1)
    with torch.autocast(device_type=batch.device.type, enabled=False):  # always float32 or wider: exp(1/tau) terms
        work_dtype = torch.promote_types(batch.dtype, torch.float32)
        loss = _ChunkedSupCon.apply(
            batch.to(work_dtype), queue.detach(), classes, num_anchors, float(denominator), temperature, chunk_size
        )
    return loss


class QueueSupConLoss(nn.Module):
    """SupCon with a FIFO memory queue of detached embeddings and their class ids (CARAT Eq. 6-7, RAMer Eq. 11).

    forward(embeddings [N_b, d_z], class_ids long [N_b] (>= 0), enqueue=True) -> scalar loss. The embeddings are
    L2-normalised here; the loss uses the queue as it was *before* this call, then (if `enqueue`) the batch is
    written into the queue. Buffers (queue, ids, pointer, fill level) are saved in the state dict, as the code's.
    """

    def __init__(
        self,
        dim: int,
        queue_size: int = 8192,
        temperature: float = 0.07,
        anchors: AnchorMode = "batch",
        queue_init: QueueInit = "empty",
        chunk_size: int = 256,
    ):
        super().__init__()
        if anchors not in ANCHOR_MODES:
            raise ConfigError(unknown_name("contrastive anchors", anchors, ANCHOR_MODES))
        if queue_init not in QUEUE_INITS:
            raise ConfigError(unknown_name("contrastive queue_init", queue_init, QUEUE_INITS))
        if queue_size < 0 or temperature <= 0 or chunk_size < 1:
            raise ConfigError(
                f"contrastive needs queue_size >= 0, temperature > 0 and chunk_size >= 1; got {queue_size}, "
                f"{temperature}, {chunk_size}"
            )
        self.temperature = temperature
        self.anchors = anchors
        self.chunk_size = chunk_size
        self.queue_init = queue_init
        self.register_buffer("queue", torch.zeros(queue_size, dim))  # [K, d_z]
        self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.long))  # [K]
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))  # valid rows = [0, filled)
        self.reset_queue()

    def reset_queue(self) -> None:
        """Return the queue to its initial state (empty, or the official random one)."""
        k = self.queue.shape[0]
        self.queue_ptr.zero_()
        if self.queue_init == "code":
            self.queue.copy_(F.normalize(torch.randn_like(self.queue), dim=0))
            self.queue_ids.copy_(-1 - torch.arange(k, device=self.queue_ids.device))  # distinct: never match
            self.queue_filled.fill_(k)
        else:
            self.queue.zero_()
            self.queue_ids.fill_(-1)
            self.queue_filled.zero_()

    def forward(self, embeddings: Tensor, class_ids: Tensor, enqueue: bool = True) -> Tensor:
        if class_ids.numel() and int(class_ids.min()) < 0:
            raise ValueError("contrastive class ids must be >= 0 (negative ids are reserved for the queue)")
        feats = F.normalize(embeddings, dim=-1)  # [N_b, d_z]
        filled = int(self.queue_filled)
        loss = supcon_loss(
            feats,
            class_ids,
            self.queue[:filled],
            self.queue_ids[:filled],
            anchors=self.anchors,
            temperature=self.temperature,
            chunk_size=self.chunk_size,
        )
        if enqueue:
            self.enqueue(feats.detach(), class_ids)
        return loss

    @torch.no_grad()
    def enqueue(self, feats: Tensor, class_ids: Tensor) -> None:
        """Write rows FIFO at the pointer with wrap-around; with more rows than the queue, the newest K stay."""
        k = self.queue.shape[0]
        n = feats.shape[0]
        if k == 0 or n == 0:
            return
        keep = min(n, k)
        start = int(self.queue_ptr) + n - keep
        slots = (start + torch.arange(keep, device=feats.device)) % k  # [keep], distinct
        self.queue[slots] = feats[n - keep :].to(self.queue.dtype)
        self.queue_ids[slots] = class_ids[n - keep :].long()
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % k)
        self.queue_filled.fill_(min(int(self.queue_filled) + n, k))
