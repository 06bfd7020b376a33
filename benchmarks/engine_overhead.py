"""Engine overhead: seconds per training epoch of `baseline` on synth-party through `mmer.engine.trainer.fit` versus
a bare PyTorch loop doing the same arithmetic.

- Data: synth-party, default size, generated in memory exactly as `mmer train --dataset synth-party` loads it
  (2997 training samples, batch 32, drop_last: 93 steps per epoch).
- Model, optimizer, schedule: the `baseline/synth-party` preset (AdamW, warmup_linear, grad_clip 1.0), `--epochs` epochs.
- engine: `fit()` on CPU with one process (what `mmer train --device cpu` runs); timed is each call of the epoch
  loop `_Fit._train_epoch` (batch gathering, StepContext, training_step, divergence checks, global clip, optimizer
  and schedule step, loss logging). Validation is not timed; checkpoint writes (last.pt each epoch, best.pt on
  improvement) are timed separately and reported beside it.
- bare: the same seed, model init, optimizer (mmer.engine.optim), schedule and batches in the same order
  (`train_batches`, gathered before each epoch's timer starts); per step forward, backward, clip_grad_norm_,
  optimizer.step, scheduler.step, zero_grad, loss.item().
- Each figure: a fresh process, torch threads 2, median over epochs 2..E (epoch 1 is warm-up); engine and bare
  processes alternate; reported is the median (min-max) over `--repeats` processes and the 1-minute load average.
- Equality: the first pair's parameters after epoch 1 and last epoch and its per-epoch mean losses are compared.

Usage: .venv/bin/python benchmarks/engine_overhead.py [--repeats 3] [--epochs 6] [--json FILE] [--set KEY=VALUE ...]
       .venv/bin/python benchmarks/engine_overhead.py --clock cpu --threads 1  # when other processes share the CPU
       .venv/bin/python benchmarks/engine_overhead.py --profile engine      # cProfile of one engine epoch
Target: engine overhead <= 10%.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmer import config as cfglib
from mmer.data.load import load_dataset
from mmer.data.loader import num_train_batches, train_batches
from mmer.engine import trainer
from mmer.engine.optim import build_optimizer, build_scheduler
from mmer.io import write_json
from mmer.models.baseline import LateFusionBaseline

TARGET = 0.10
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # set by --clock


def resolve(epochs: int, threads: int, overrides: list[str]) -> cfglib.Config:
    flags = {"train.epochs": epochs, "train.device": "cpu", "train.threads": threads}
    return cfglib.resolve("baseline", "synth-party", overrides=overrides, flags=flags)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_engine(cfg: cfglib.Config, dump: str | None, profile: bool = False) -> dict[str, Any]:
    """fit() as `mmer train` runs it, with timers around the epoch loop and the checkpoint writes."""
    epoch_s: list[float] = []
    checkpoint_s = [0.0] * cfg.train.epochs
    losses: list[float] = []
    states: dict[str, dict[str, torch.Tensor]] = {}
    original_epoch, original_save = trainer._Fit._train_epoch, trainer.save_checkpoint

    def timed_epoch(self: Any, optimizer: Any, scheduler: Any, epoch: int, *args: Any) -> dict[str, float]:
        profiler = cProfile.Profile() if profile and epoch == 1 else None
        start = clock()
        if profiler is not None:
            profiler.enable()
        logs = original_epoch(self, optimizer, scheduler, epoch, *args)
        if profiler is not None:
            profiler.disable()
        epoch_s.append(clock() - start)
        if profiler is not None:
            stats = pstats.Stats(profiler).sort_stats("cumulative")
            stats.print_callees("_train_epoch")
            stats.print_stats(25)
        losses.append(logs["train_loss"])
        if epoch == 0:
            states["epoch1"] = snapshot(self.model)
        if epoch == cfg.train.epochs - 1:
            states["last"] = snapshot(self.model)
        return logs

    def timed_save(path: Any, payload: dict[str, Any]) -> None:
        start = clock()
        original_save(path, payload)
        checkpoint_s[len(epoch_s) - 1] += clock() - start

    trainer._Fit._train_epoch = timed_epoch  # type: ignore[method-assign]
    trainer.save_checkpoint = timed_save  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer.fit(cfg, Path(tmp) / "run", quiet=True)
    finally:
        trainer._Fit._train_epoch, trainer.save_checkpoint = original_epoch, original_save  # type: ignore[method-assign]
    if dump:
        torch.save({"losses": losses, **states}, dump)
    return {"epoch_s": epoch_s, "checkpoint_s": checkpoint_s, "losses": losses}


def run_bare(cfg: cfglib.Config, dump: str | None) -> dict[str, Any]:
    """The same arithmetic in a plain loop: same seed, init, optimizer, schedule, batches and order."""
    torch.manual_seed(cfg.train.seed)  # what fit's seed_everything does for torch, before building the model
    bundle = load_dataset(cfg.data.name, cfg.data.root, cfg.data.options)  # numpy-seeded generator: no torch RNG used
    train = bundle.splits["train"]
    model = LateFusionBaseline(cfg.model, bundle.spec)
    t = cfg.train
    steps = num_train_batches(len(train), cfg.data.batch_size, 1, cfg.data.drop_last)
    optimizer = build_optimizer(model, t)
    scheduler = build_scheduler(optimizer, t, steps * t.epochs, steps)
    params = [p for group in optimizer.param_groups for p in group["params"]]  # the engine clips in this order
    epoch_s, losses, states = [], [], {}
    for epoch in range(t.epochs):
        batches = list(train_batches(train, cfg.data.batch_size, t.seed, epoch, drop_last=cfg.data.drop_last))
        model.train()
        loss_sum, seen = 0.0, 0
        start = clock()
        for batch in batches:
            loss = model(batch).losses["bce"]
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.item() * batch.size
            seen += batch.size
        epoch_s.append(clock() - start)
        losses.append(loss_sum / seen)
        if epoch == 0:
            states["epoch1"] = snapshot(model)
        if epoch == t.epochs - 1:
            states["last"] = snapshot(model)
    if dump:
        torch.save({"losses": losses, **states}, dump)
    return {"epoch_s": epoch_s, "losses": losses, "steps": steps}


def compare(engine_file: str, bare_file: str) -> dict[str, float]:
    a, b = torch.load(engine_file, weights_only=True), torch.load(bare_file, weights_only=True)
    out = {"loss_max_abs_diff": max(abs(x - y) for x, y in zip(a["losses"], b["losses"]))}
    for key in ("epoch1", "last"):
        if a[key].keys() != b[key].keys():
            raise SystemExit(f"state dict keys differ: {sorted(a[key].keys() ^ b[key].keys())}")
        out[f"param_max_abs_diff_{key}"] = max(float((a[key][k].float() - b[key][k].float()).abs().max()) for k in a[key])
    return out


def per_process(run: dict[str, Any]) -> float:
    times = run["epoch_s"][1:] or run["epoch_s"]  # epoch 1 is warm-up
    return statistics.median(times)


def spread(values: list[float], fmt: str = ".3f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="processes per loop (the median is reported)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per process; epoch 1 is not counted")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override on the baseline/synth-party preset (both loops)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="cpu: process CPU time (with --threads 1, less sensitive than wall time to other processes sharing the CPU)")
    parser.add_argument("--profile", choices=("engine",), help="run the engine once in this process and print cProfile of epoch 2")
    parser.add_argument("--json", help="also write the raw runs to this file")
    parser.add_argument("--worker", choices=("engine", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    cfg = resolve(args.epochs, args.threads, args.overrides)
    if args.worker:
        worker: Callable[..., dict[str, Any]] = run_engine if args.worker == "engine" else run_bare
        print(json.dumps(worker(cfg, args.dump)))
        return
    if args.profile:
        run_engine(resolve(max(args.epochs, 2), args.threads, args.overrides), None, profile=True)
        return

    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "bare": []}
    check: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("engine", "bare") if r % 2 == 0 else ("bare", "engine"):
                load = os.getloadavg()[0]
                command = [sys.executable, __file__, "--worker", mode, "--threads", str(args.threads), "--epochs", str(args.epochs), "--clock", args.clock]
                command += [f"--set={o}" for o in args.overrides]
                if r == 0:
                    command += ["--dump", f"{tmp}/{mode}.pt"]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                run["load"] = max(load, os.getloadavg()[0])
                run["seconds"] = per_process(run)
                runs[mode].append(run)
                print(f"  {mode} process {r + 1}: {run['seconds']:.3f} s/epoch (epochs: {', '.join(f'{s:.3f}' for s in run['epoch_s'])}); load {run['load']:.2f}", flush=True)
            if r == 0:
                check = compare(f"{tmp}/engine.pt", f"{tmp}/bare.pt")

    steps = runs["bare"][0]["steps"]
    engine = [r["seconds"] for r in runs["engine"]]
    bare = [r["seconds"] for r in runs["bare"]]
    ckpt = [statistics.median(r["checkpoint_s"][1:] or r["checkpoint_s"]) * 1000 for r in runs["engine"]]
    with_ckpt = [per_process({"epoch_s": [e + c for e, c in zip(r["epoch_s"], r["checkpoint_s"])]}) for r in runs["engine"]]
    pairs = [e / b - 1 for e, b in zip(engine, bare)]
    overhead = statistics.median(engine) / statistics.median(bare) - 1
    loads = [r["load"] for rs in runs.values() for r in rs]
    print(f"engine training epoch: {spread(engine)} s ({steps} steps)")
    print(f"bare loop epoch:       {spread(bare)} s")
    print(f"engine overhead: {overhead * 100:+.1f}% (per pair {', '.join(f'{p * 100:+.1f}%' for p in pairs)}); target <= {TARGET * 100:.0f}%: {'met' if overhead <= TARGET else 'NOT met'}")
    print(f"checkpoint writes (last.pt [+ best.pt]) per epoch, not in the figures above: {spread(ckpt, '.1f')} ms")
    print(f"engine epoch + checkpoint writes: {spread(with_ckpt)} s, overhead {(statistics.median(with_ckpt) / statistics.median(bare) - 1) * 100:+.1f}%")
    print(f"load {min(loads):.2f}-{max(loads):.2f}; {args.repeats} processes per loop, {args.epochs} epochs each, torch threads {args.threads}, {args.clock} clock")
    if max(loads) > 0.5 + args.threads and args.clock == "wall":
        print("warning: another process shared the CPU during the measurement (1-min load above this benchmark's own threads); the figures are not reliable")
    print(
        f"same run check (first pair): max |param diff| after epoch 1 {check['param_max_abs_diff_epoch1']:.3g}, "
        f"after epoch {args.epochs} {check['param_max_abs_diff_last']:.3g}; max |epoch mean loss diff| {check['loss_max_abs_diff']:.3g}"
    )
    if args.json:
        write_json(args.json, {"overrides": args.overrides, "epochs": args.epochs, "threads": args.threads, "clock": args.clock, "overhead": overhead, "check": check, "runs": runs})


if __name__ == "__main__":
    main()
