"""Training/inference throughput and peak memory of CARAT, measured as reference/official_speed.md measured the
official code (CARAT anchor: 16.1 samples/s training, 174 samples/s inference, 11.2 GiB peak RSS training).

- Data: random pre-collated batches shaped like aligned CMU-MOSEI (text 60x300, visual 60x35, audio 60x74, every
  step real, 6 labels with MOSEI's ~1.6 labels per sample); the data layer is not timed.
- Model and optimizer: the `mosei-aligned` preset (configs/carat/mosei-aligned.yaml), plus any `--set` overrides.
- train: 10 full steps (forward, backward, global clip, optimizer and schedule step, zero_grad; the engine's own
  training step) timed after 2 warm-up steps, batch 64.
- infer: 640 samples at batch 64 in eval mode under no_grad, timed after 2 warm-up batches.
- Peak memory: ru_maxrss of a fresh process per measurement; torch threads 2; the median (min-max) of 3 processes.

Usage: .venv/bin/python benchmarks/carat_speed.py [--repeats 3] [--set model.contrastive_anchors=pool ...]
       .venv/bin/python benchmarks/carat_speed.py --profile train   # one step under torch.profiler
The machine's load (`os.getloadavg`) is printed with the figures: numbers taken on a busy machine are slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from lightning_fabric import Fabric

from mmer import config as cfglib
from mmer.data.batch import Batch
from mmer.engine.context import StepContext, run_training_step
from mmer.engine.memory import apply_memory_option
from mmer.engine.optim import build_optimizer, build_scheduler
from mmer.models.carat import CARAT
from mosei_shapes import BATCH, INFER_SAMPLES, SPEC, TRAIN_STEPS, WARMUP, make_batches, peak_gib

ANCHOR = {"train": 16.1, "infer": 174.0, "train_gib": 11.2, "infer_gib": 0.66}  # official, reference/official_speed.md


def build(overrides: list[str]) -> tuple[CARAT, cfglib.Config]:
    cfg = cfglib.resolve("carat", "mosei-aligned", overrides=overrides)
    torch.manual_seed(cfg.train.seed)
    return CARAT(cfg.model, SPEC), cfg


def run_train(overrides: list[str]) -> dict[str, float]:
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    fabric = Fabric(accelerator="cpu", devices=1)
    total = TRAIN_STEPS + WARMUP
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, total_steps=16326 // BATCH * cfg.train.epochs, steps_per_epoch=16326 // BATCH)
    batches = make_batches(total)
    model.train()
    start = 0.0
    for step, batch in enumerate(batches):
        if step == WARMUP:
            start = time.perf_counter()
        ctx = StepContext(fabric, 0, step, total)
        run_training_step(model, batch, ctx, cfg.train.micro_batch)  # as the trainer runs it
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {"samples_per_s": TRAIN_STEPS * BATCH / seconds, "peak_gib": peak_gib(), "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


@torch.no_grad()
def run_infer(overrides: list[str]) -> dict[str, float]:
    model, _ = build(overrides)
    model.eval()
    batches = make_batches(WARMUP + INFER_SAMPLES // BATCH)
    start = 0.0
    for i, batch in enumerate(batches):
        if i == WARMUP:
            start = time.perf_counter()
        model.predict_proba(batch)
    seconds = time.perf_counter() - start
    return {"samples_per_s": INFER_SAMPLES / seconds, "peak_gib": peak_gib()}


def profile(mode: str, overrides: list[str]) -> None:
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = build_optimizer(model, cfg.train)
    batches = make_batches(2)
    model.train(mode == "train")

    def once(batch: Batch) -> None:
        if mode == "train":
            model.training_step(batch, StepContext(fabric, 0, 0, 2))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model.predict_proba(batch)

    once(batches[0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        once(batches[1])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print("op calls:", sum(e.count for e in prof.key_averages()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="processes per measurement (median is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override on the mosei-aligned preset")
    parser.add_argument("--only", choices=("train", "infer"), help="measure one mode only")
    parser.add_argument("--worker", choices=("train", "infer"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=("train", "infer"), help="profile one step instead of timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps((run_train if args.worker == "train" else run_infer)(args.overrides)))
        return
    if args.profile:
        profile(args.profile, args.overrides)
        return
    results: dict[str, list[dict[str, float]]] = {}
    for mode in ("train", "infer") if args.only is None else (args.only,):
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            command = [sys.executable, __file__, "--worker", mode, "--threads", str(args.threads)]
            command += [f"--set={o}" for o in args.overrides]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append({**json.loads(out.strip().splitlines()[-1]), "load": load})
        results[mode] = runs
        speeds = [r["samples_per_s"] for r in runs]
        peaks = [r["peak_gib"] for r in runs]
        anchor = ANCHOR[mode]
        print(
            f"{mode}: {statistics.median(speeds):.1f} samples/s ({min(speeds):.1f}-{max(speeds):.1f}), "
            f"x{statistics.median(speeds) / anchor:.2f} vs official {anchor}; peak RSS {statistics.median(peaks):.2f} GiB "
            f"({min(peaks):.2f}-{max(peaks):.2f}) vs official {ANCHOR[mode + '_gib']} GiB; "
            "load averages " + ", ".join(f"{r['load']:.1f}" for r in runs)
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
