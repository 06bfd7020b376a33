"""TAILOR training/inference throughput and peak memory on CMU-MOSEI-aligned shapes, measured the way
reference/official_speed.md measured the official code (kniter1/TAILOR: 8.85 train samples/s at batch 64,
38.6 inference samples/s, 11.6 GiB peak RSS while training, 1.18 GiB while inferring):

- random data shaped like aligned MOSEI: text 60x300, visual 60x35, audio 60x74, every step real (the official
  loaders' all-ones masks), 6 labels; batches pre-collated (the data layer is not timed);
- model and optimizer: the `mosei-aligned` preset (configs/tailor/mosei-aligned.yaml: BertAdam, warmup-linear),
  plus any `--set` overrides;
- train: 10 full steps (forward, backward — in chunks with `train.micro_batch`, as the trainer runs them —, the
  engine's global clip, optimizer and schedule step, zero_grad) timed after 2 warm-up steps, batch 64; infer: 640 samples at batch 64 in eval mode under no_grad, after 2
  warm-up batches;
- peak RSS = ru_maxrss of a fresh process per measurement; torch threads 2; median (min-max) of --repeats
  processes; the 1-minute load average before and after each measurement (the machine is shared).

    .venv/bin/python benchmarks/tailor_speed.py                    # train + infer (+ flops), JSON to benchmarks/results/
    .venv/bin/python benchmarks/tailor_speed.py --only train --repeats 1 --set model.classifier=shared
    .venv/bin/python benchmarks/tailor_speed.py --only train --set train.micro_batch=16     # batch 64 in chunks of 16
    .venv/bin/python benchmarks/tailor_speed.py --only train --set train.release_memory=true --set model.recompute_cross=true --set model.recompute_unimodal=true
    .venv/bin/python benchmarks/tailor_speed.py --profile train    # one step under torch.profiler (top ops)
    .venv/bin/python benchmarks/tailor_speed.py --one train        # one measurement in this process
    .venv/bin/python benchmarks/tailor_speed.py --saved            # what one training step keeps for backward
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric
from torch.utils._python_dispatch import TorchDispatchMode

from mmer import config as cfglib
from mmer.data.batch import Batch
from mmer.engine.context import StepContext, run_training_step
from mmer.engine.memory import apply_memory_option
from mmer.engine.optim import build_optimizer, build_scheduler
from mmer.models.tailor import TAILOR
from mosei_shapes import BATCH, INFER_SAMPLES, SPEC, TRAIN_STEPS, WARMUP, make_batches, peak_gib

OFFICIAL = {"train_samples_per_s": 8.85, "infer_samples_per_s": 38.6, "train_peak_gib": 11.6, "infer_peak_gib": 1.18}
RESULTS = Path(__file__).parent / "results" / "tailor_speed.json"


def build(overrides: list[str]) -> tuple[TAILOR, cfglib.Config]:
    """The mosei-aligned preset (read directly: no dataset files are needed) with `overrides` applied."""
    data = cfglib.default_dict("tailor", "synth-dyadic")  # any registered dataset: only the model/train sections are used
    preset = cfglib.read_yaml(Path(str(cfglib.preset_path("tailor", "mosei-aligned"))), "preset")
    cfglib.merge_into(data, {"model": preset["model"], "train": preset["train"]}, "preset tailor/mosei-aligned")
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    cfg = cfglib.build(data)
    torch.manual_seed(cfg.train.seed)
    return TAILOR(cfg.model, SPEC), cfg


def train_steps(model: TAILOR, cfg: cfglib.Config, batches: list[Batch], warmup: int, steps: int) -> float:
    """Samples per second over `steps` engine-style steps after `warmup` untimed ones."""
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, 255 * cfg.train.epochs, 255)
    model.train()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        ctx = StepContext(fabric, 0, i, warmup + steps)
        run_training_step(model, batches[i % len(batches)], ctx, cfg.train.micro_batch)
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH / (time.perf_counter() - start)


def infer(model: TAILOR, batches: list[Batch], warmup: int) -> float:
    model.eval()
    with torch.no_grad():
        for b in batches[:warmup]:
            model.predict_proba(b)
        start = time.perf_counter()
        for b in batches:
            model.predict_proba(b)
    return len(batches) * BATCH / (time.perf_counter() - start)


def flops_per_sample(model: TAILOR, batch_size: int = 8) -> dict[str, float]:
    """Matmul FLOPs (FlopCounterMode) of one training forward + backward and of one inference forward."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = make_batches(1)[0]
    batch = Batch({m: x[:batch_size] for m, x in batch.features.items()}, {m: x[:batch_size] for m, x in batch.masks.items()}, batch.labels[:batch_size], batch.ids[:batch_size], batch.index[:batch_size])
    fabric = Fabric(accelerator="cpu", devices=1)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.training_step(batch, StepContext(fabric, 0, 0, 1))
    train = counter.get_total_flops() / batch_size / 1e9
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.predict_proba(batch)
    return {"train_gflop_per_sample": round(train, 3), "infer_gflop_per_sample": round(counter.get_total_flops() / batch_size / 1e9, 3)}


def run_one(mode: str, overrides: list[str]) -> dict[str, Any]:
    torch.set_num_threads(2)
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    out: dict[str, Any] = {"mode": mode, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if mode == "train":
        out["samples_per_s"] = train_steps(model, cfg, make_batches(4), WARMUP, TRAIN_STEPS)
    elif mode == "infer":
        out["samples_per_s"] = infer(model, make_batches(INFER_SAMPLES // BATCH), WARMUP)
    else:
        out.update(flops_per_sample(model))
    out["cpu_seconds"] = round(time.process_time() - cpu_before, 1)
    out["peak_rss_gib"] = round(peak_gib(), 3)
    out["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return out


def profile(mode: str, overrides: list[str], rows: int) -> None:
    """One step (after one warm-up) under torch.profiler; prints the ops by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(2)
    model, cfg = build(overrides)
    apply_memory_option(cfg.train)  # as `mmer train` does
    batches = make_batches(2)
    if mode == "train":
        train_steps(model, cfg, batches, 1, 0)
        with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            train_steps(model, cfg, batches, 0, 1)
    else:
        infer(model, batches[:1], 1)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            infer(model, batches[:1], 0)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


class HeapSampler(TorchDispatchMode):
    """glibc's malloc statistics after every op: the peak of the bytes in use (main arena + mmapped chunks, where
    the main thread's tensors live) against the heap the process holds. Linux/glibc only."""

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    def __init__(self) -> None:
        super().__init__()
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self.libc.mallinfo2.restype = self._Info
        self.start = self._sample()
        self.peak_in_use, self.peak_held = self.start

    def _sample(self) -> tuple[int, int]:
        info = self.libc.mallinfo2()
        return info.uordblks + info.hblkhd, info.arena + info.hblkhd  # (in use, held)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        in_use, held = self._sample()
        self.peak_in_use, self.peak_held = max(self.peak_in_use, in_use), max(self.peak_held, held)
        return out

    def report(self) -> str:
        gib = 2**30
        return (
            f"malloc: {self.start[0] / gib:.2f} GiB in use and {self.start[1] / gib:.2f} GiB held before the step; "
            f"peak {self.peak_in_use / gib:.2f} GiB in use, {self.peak_held / gib:.2f} GiB held during it"
        )


def saved_census(overrides: list[str], rows: int) -> None:
    """One training step (after one warm-up step): the tensors autograd saves for backward, counted once per
    storage and attributed to the innermost module running when each was saved (MiB per top-level block), and
    the malloc heap's peak during the step (`HeapSampler`)."""
    torch.set_num_threads(2)
    model, cfg = build(overrides)
    batches = make_batches(2)
    train_steps(model, cfg, batches, 1, 0)
    running = ["(model)"]  # stack of the modules whose forward is running

    def enter(name: str) -> Callable[..., None]:
        return lambda module, inputs: running.append(name or "(model)")

    def leave(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        running.pop()

    for name, module in model.named_modules():
        module.register_forward_pre_hook(enter(name))
        module.register_forward_hook(leave)
    saved: dict[int, tuple[str, int]] = {}  # storage address -> (module, bytes)

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved.setdefault(storage.data_ptr(), (running[-1], storage.nbytes()))
        return t

    model.train()
    heap = HeapSampler()
    with heap, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.training_step(batches[0], StepContext(Fabric(accelerator="cpu", devices=1), 0, 0, 1))
    print(heap.report())
    by_block: dict[str, int] = {}
    for module, nbytes in saved.values():
        block = ".".join(module.split(".")[:2])
        by_block[block] = by_block.get(block, 0) + nbytes
    print(f"saved for backward: {sum(by_block.values()) / 2**20:.0f} MiB in {len(saved)} storages")
    for block, nbytes in sorted(by_block.items(), key=lambda kv: -kv[1])[:rows]:
        print(f"{nbytes / 2**20:9.1f} MiB  {block}")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(values: list[float]) -> str:
        return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})" if values else "-"

    good = [r for r in rows if "error" not in r]
    return {
        "samples_per_s": stat([r["samples_per_s"] for r in good if "samples_per_s" in r]),
        "peak_rss_gib": stat([r["peak_rss_gib"] for r in good]),
        "load_1min": [r.get("load_1min") for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=["train", "infer", "flops"], help="one measurement in this process; prints JSON")
    parser.add_argument("--only", choices=["train", "infer", "flops"], help="driver: only this kind of measurement")
    parser.add_argument("--profile", choices=["train", "infer"], help="one step under torch.profiler")
    parser.add_argument("--saved", action="store_true", help="census of the tensors saved for backward, by block")
    parser.add_argument("--rows", type=int, default=25, help="profile / saved: rows of the table")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.overrides)))
        return
    if args.profile:
        profile(args.profile, args.overrides, args.rows)
        return
    if args.saved:
        saved_census(args.overrides, args.rows)
        return
    plan = [args.only] if args.only else ["flops", "train", "infer"]
    results: dict[str, Any] = {"official": OFFICIAL, "threads": 2, "overrides": args.overrides, "measurements": {}}
    for mode in plan:
        rows = []
        for _ in range(1 if mode == "flops" else args.repeats):
            cmd = [sys.executable, __file__, "--one", mode] + [f"--set={o}" for o in args.overrides]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results["measurements"][mode] = {"runs": rows, **({} if mode == "flops" else summarize(rows))}
        print(mode, json.dumps(results["measurements"][mode]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
