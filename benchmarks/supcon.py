"""Time and peak memory of the queue SupCon loss (forward + backward) at the CMU-MOSEI size.

Batch part 9 views x 64 samples x 6 labels = 3456 rows, queue 8192 rows, d_z = 64, 36 classes
(modality, label, polarity). Variants:
- chunked-batch / chunked-pool: `mmer.nn.contrastive.supcon_loss` with anchors "batch" / "pool";
- naive-batch / naive-pool: the official full-matrix formulation (logits, masks, exp, log-prob products all
  materialised; pool = every batch and queue row is an anchor, as the official code).

Each variant runs in its own process so its peak resident memory (ru_maxrss) can be measured; the number reported
is the peak above the process's resident size after the inputs were built. Usage:

    .venv/bin/python benchmarks/supcon.py [--repeats 3] [--threads 2] [--chunk 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mmer.nn.contrastive import modality_label_polarity_ids, supcon_loss

BATCH, VIEWS, LABELS, QUEUE, DIM, TAU = 64, 9, 6, 8192, 64, 0.07
VARIANTS = ("chunked-batch", "chunked-pool", "naive-batch", "naive-pool")


def naive_supcon(batch, batch_ids, queue, queue_ids, anchors: str, tau: float):
    """The official formulation: every N_anchor x N matrix is materialised (float masks, exp, log-prob)."""
    feats = torch.cat([batch, queue])
    ids = torch.cat([batch_ids, queue_ids]).float()
    n_anchor = batch.shape[0] if anchors == "batch" else feats.shape[0]
    logits = feats[:n_anchor] @ feats.T / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    mask = (ids[:n_anchor, None] == ids[None, :]).float()
    logits_mask = torch.ones_like(mask).scatter_(1, torch.arange(n_anchor)[:, None], 0.0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-12)
    mean_log_prob_pos = (mask * log_prob).sum(1) / (mask.sum(1) + 1e-12)
    per_anchor = -mean_log_prob_pos
    if anchors == "batch":
        return per_anchor.sum() / (mask.sum(1) > 0).sum().clamp(min=1)
    return per_anchor.mean()


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(BATCH, LABELS, generator=g) < 0.3).float()
    view_modality = [v % 3 for v in range(VIEWS)]
    ids = modality_label_polarity_ids(labels, view_modality).reshape(-1)  # [9 * 64 * 6]
    raw = torch.randn(ids.numel(), DIM, generator=g, requires_grad=True)
    old_labels = (torch.rand(QUEUE // (VIEWS * LABELS) + 1, LABELS, generator=g) < 0.3).float()
    queue_ids = modality_label_polarity_ids(old_labels, view_modality).reshape(-1)[:QUEUE]
    queue = F.normalize(torch.randn(QUEUE, DIM, generator=g), dim=-1)
    return raw, ids, queue, queue_ids


def run_variant(variant: str, repeats: int, chunk: int) -> dict:
    raw, ids, queue, queue_ids = make_inputs()
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kind, anchors = variant.split("-")
    times, loss = [], None
    for _ in range(repeats):
        raw.grad = None
        start = time.perf_counter()
        feats = F.normalize(raw, dim=-1)
        if kind == "chunked":
            loss = supcon_loss(feats, ids, queue, queue_ids, anchors=anchors, temperature=TAU, chunk_size=chunk)
        else:
            loss = naive_supcon(feats, ids, queue, queue_ids, anchors, TAU)
        loss.backward()
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "variant": variant,
        "loss": float(loss),
        "grad_norm": float(raw.grad.norm()),
        "seconds_min": min(times),
        "seconds_median": sorted(times)[len(times) // 2],
        "peak_extra_mb": (peak_kb - base_kb) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the four variants")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.repeats, args.chunk)))
        return
    rows = BATCH * VIEWS * LABELS
    print(f"SupCon fwd+bwd: batch rows {rows}, queue {QUEUE}, d_z {DIM}, threads {args.threads}, chunk {args.chunk}")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average)")
    results = []
    for variant in args.variants.split(","):
        options = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--chunk", str(args.chunk)]
        cmd = [sys.executable, __file__, "--variant", variant, *options]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'variant':<15}{'loss':>12}{'|grad|':>12}{'median s':>10}{'min s':>8}{'peak extra MB':>15}")
    for r in results:
        print(
            f"{r['variant']:<15}{r['loss']:>12.6f}{r['grad_norm']:>12.6f}{r['seconds_median']:>10.2f}"
            f"{r['seconds_min']:>8.2f}{r['peak_extra_mb']:>15.0f}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")


if __name__ == "__main__":
    main()
