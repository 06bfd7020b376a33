"""Training/inference throughput and peak memory of RAMer, measured the way reference/official_speed.md measured the
official code (RAMer anchor: 20.4 samples/s training, 262 samples/s inference, 9.5 GiB peak RSS training).

- Data: random pre-collated batches shaped like aligned CMU-MOSEI (text 60x300, visual 60x35, audio 60x74, every
  step real, 6 labels, ~1.6 labels per sample); the data layer is not timed.
- Model and optimizer: the `mosei-aligned` preset (configs/ramer/mosei-aligned.yaml: d 256, 3/3/3 layers, queue
  8192, BertAdam), plus any `--set` overrides (e.g. `--set model.contrastive_anchors=pool` for the code's SupCon).
- train: 10 full steps (the model's training_step = forward + backward, global grad clip, optimizer and schedule
  step, zero_grad) timed after 2 warm-up steps, batch 64.
- infer: 640 samples at batch 64 in eval mode under no_grad (`predict_proba`), timed after 2 warm-up batches.
- Peak memory: ru_maxrss of a fresh process per measurement; torch threads 2; median (min-max) of 3 processes.

Usage: .venv/bin/python benchmarks/ramer_speed.py [--repeats 3] [--set KEY=VALUE ...] [--precision bf16]
       .venv/bin/python benchmarks/ramer_speed.py --profile train        # one step under torch.profiler
The 1-minute load average is printed with every figure: numbers taken on a busy machine are slower.
"""

from __future__ import annotations

import argparse
import contextlib
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
from mmer.io import write_json
from mmer.models.ramer import RAMer
from mosei_shapes import BATCH, INFER_SAMPLES, SPEC, TRAIN_STEPS, WARMUP, make_batches, peak_gib

STEPS_PER_EPOCH = 16326 // BATCH  # MOSEI's training split, for the schedule
OFFICIAL = {"train": 20.4, "infer": 262.0, "train_gib": 9.5, "infer_gib": 0.62}  # reference/official_speed.md


def build(overrides: list[str]) -> tuple[RAMer, cfglib.Config]:
    cfg = cfglib.resolve("ramer", "mosei-aligned", overrides=overrides)
    torch.manual_seed(cfg.train.seed)
    return RAMer(cfg.model, SPEC), cfg


def autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_train(overrides: list[str], precision: str) -> dict[str, float]:
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, STEPS_PER_EPOCH * cfg.train.epochs, STEPS_PER_EPOCH)
    total = WARMUP + TRAIN_STEPS
    batches = make_batches(total)
    model.train()
    start = 0.0
    for step, batch in enumerate(batches):
        if step == WARMUP:
            start = time.perf_counter()
        with autocast(precision):
            run_training_step(model, batch, StepContext(fabric, 0, step, total), cfg.train.micro_batch)  # as the trainer runs it
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or float("inf"))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"samples_per_s": TRAIN_STEPS * BATCH / seconds, "peak_gib": peak_gib(), "params_m": params}


@torch.no_grad()
def run_infer(overrides: list[str], precision: str) -> dict[str, float]:
    model, _ = build(overrides)
    model.eval()
    batches = make_batches(WARMUP + INFER_SAMPLES // BATCH)
    start = 0.0
    for i, batch in enumerate(batches):
        if i == WARMUP:
            start = time.perf_counter()
        with autocast(precision):
            model.predict_proba(batch)
    return {"samples_per_s": INFER_SAMPLES / (time.perf_counter() - start), "peak_gib": peak_gib()}


def profile(mode: str, overrides: list[str], precision: str) -> None:
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = build_optimizer(model, cfg.train)
    batches = make_batches(2)
    model.train(mode == "train")

    def once(batch: Batch) -> None:
        with autocast(precision):
            if mode == "train":
                model.training_step(batch, StepContext(fabric, 0, 0, 2))
            else:
                with torch.no_grad():
                    model.predict_proba(batch)
        if mode == "train":
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    once(batches[0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        once(batches[1])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print("op calls:", sum(e.count for e in prof.key_averages()))


def summarise(mode: str, runs: list[dict[str, float]]) -> str:
    rates = [r["samples_per_s"] for r in runs]
    peaks = [r["peak_gib"] for r in runs]
    loads = [r["load"] for r in runs]
    official, official_gib = OFFICIAL[mode], OFFICIAL[f"{mode}_gib"]
    return (
        f"{mode}: {statistics.median(rates):.1f} samples/s ({min(rates):.1f}-{max(rates):.1f}), "
        f"{statistics.median(rates) / official:.2f}x the official {official}; peak RSS {statistics.median(peaks):.2f} GiB "
        f"({min(peaks):.2f}-{max(peaks):.2f}; official {official_gib}); load {min(loads):.1f}-{max(loads):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="processes per measurement (the median is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override on the mosei-aligned preset")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: CPU autocast (as train.precision=bf16)")
    parser.add_argument("--only", choices=("train", "infer"), help="measure one mode only")
    parser.add_argument("--profile", choices=("train", "infer"), help="profile one step instead of timing")
    parser.add_argument("--json", help="also write the raw runs to this file")
    parser.add_argument("--worker", choices=("train", "infer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker = run_train if args.worker == "train" else run_infer
        print(json.dumps(worker(args.overrides, args.precision)))
        return
    if args.profile:
        profile(args.profile, args.overrides, args.precision)
        return
    results: dict[str, list[dict[str, float]]] = {}
    for mode in (args.only,) if args.only else ("train", "infer"):
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            command = [sys.executable, __file__, "--worker", mode, "--threads", str(args.threads), "--precision", args.precision]
            command += [f"--set={o}" for o in args.overrides]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append({**json.loads(out.strip().splitlines()[-1]), "load": max(load, os.getloadavg()[0])})
        results[mode] = runs
        print(summarise(mode, runs), flush=True)
    if "train" in results:
        print(f"parameters: {results['train'][0]['params_m']:.2f} M (official registers 10.89 M, of which 5.68 M are used)")
    if args.json:
        write_json(args.json, {"overrides": args.overrides, "precision": args.precision, "threads": args.threads, "runs": results})


if __name__ == "__main__":
    main()
