"""AMP training/inference throughput and peak memory on CMU-MOSEI-aligned shapes, measured the way
reference/official_speed.md measured the official code (ShipingGe/MMER: 2.49 train samples/s at batch 64,
15.6 inference samples/s, 17.3 GiB peak at batch 64, out of memory at its default batch 128):

- random data shaped like aligned MOSEI: text 60x300, visual 60x35, audio 60x74, 6 labels, batches pre-collated;
- train: 10 full steps (AMP's three-backward step, global clip, optimizer and schedule step, zero_grad) timed
  after 2 warm-up steps; inference: 640 samples at batch 64 in eval mode under no_grad, after 2 warm-up batches;
- peak RSS = ru_maxrss of a fresh process per measurement; torch threads = 2; median (min-max) of --repeats
  processes; the 1-minute load average is recorded before and after each measurement (the machine is shared).

Configurations: `paper` is the mosei-aligned preset (4 encoder layers); `official-depth` is the same with the
official code's 3 layers, i.e. the network the anchor figures were measured on, for a like-for-like comparison;
`+ckpt` adds `model.activation_checkpointing=true` (uni-modal encoders recomputed in backward) for batch 128.

    python benchmarks/amp_speed.py                        # everything, JSON to benchmarks/results/amp_speed.json
    python benchmarks/amp_speed.py --only train --batch 128 --config official-depth --repeats 1
    python benchmarks/amp_speed.py --one train --batch 64 --config paper     # one measurement, this process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric import Fabric

from mmer import config as cfglib
from mmer.config import TrainConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.engine.context import StepContext
from mmer.engine.optim import build_optimizer, build_scheduler
from mmer.models.amp import AMP, AMPConfig

OFFICIAL = {"train_samples_per_s": 2.49, "infer_samples_per_s": 15.6, "train_peak_gib_bs64": 17.3}
SHAPES = {"text": 300, "visual": 35, "audio": 74}
LENGTH, LABELS = 60, 6
CONFIGS: dict[str, list[str]] = {
    "paper": [],
    "official-depth": ["model.encoder_layers=3"],
    "paper+ckpt": ["model.activation_checkpointing=true"],
    "official-depth+ckpt": ["model.encoder_layers=3", "model.activation_checkpointing=true"],
}
PLAN = [  # (config, mode, batch)
    *[(c, m, b) for c in ("official-depth", "paper") for m, b in (("flops", 4), ("infer", 64), ("train", 64), ("train", 128))],
    *[(c, "train", 128) for c in ("official-depth+ckpt", "paper+ckpt")],
]
RESULTS = Path(__file__).parent / "results" / "amp_speed.json"


def preset_configs(overrides: list[str]) -> tuple[AMPConfig, TrainConfig]:
    """The mosei-aligned preset's model and train sections (read directly: no dataset files are needed)."""
    path = Path(str(cfglib.preset_path("amp", "mosei-aligned")))
    preset = cfglib.read_yaml(path, "preset")
    data = {"model": {**cfglib.to_dict(AMPConfig()), **preset["model"]}, "train": {**cfglib.to_dict(TrainConfig()), **preset["train"]}}
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    return cfglib.from_dict(AMPConfig, data["model"], "model"), cfglib.from_dict(TrainConfig, data["train"], "train")


def make_batches(count: int, size: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(count):
        features = {m: torch.randn(size, LENGTH, d, generator=g) for m, d in SHAPES.items()}
        masks = {m: torch.ones(size, LENGTH, dtype=torch.bool) for m in SHAPES}
        labels = (torch.rand(size, LABELS, generator=g) < 0.3).float()
        batches.append(Batch(features, masks, labels, [f"{i}-{j}" for j in range(size)], torch.arange(size)))
    return batches


def spec() -> DataSpec:
    return DataSpec("mosei-shaped", tuple(f"e{i}" for i in range(LABELS)), tuple(ModalitySpec(m, d, LENGTH) for m, d in SHAPES.items()))


def measure_train(model: AMP, train_cfg: TrainConfig, batch_size: int, steps: int, warmup: int) -> float:
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = build_optimizer(model, train_cfg)
    scheduler = build_scheduler(optimizer, train_cfg, 1000, 100)
    batches = make_batches(min(steps + warmup, 12), batch_size)
    model.train()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        ctx = StepContext(fabric, 0, i, warmup + steps)
        model.training_step(batches[i % len(batches)], ctx)
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip or float("inf"))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch_size / (time.perf_counter() - start)


def measure_infer(model: AMP, batch_size: int, samples: int, warmup: int) -> float:
    batches = make_batches(samples // batch_size, batch_size)
    model.eval()
    with torch.no_grad():
        for b in batches[:warmup]:
            model.predict_proba(b)
        start = time.perf_counter()
        for b in batches:
            model.predict_proba(b)
    return samples / (time.perf_counter() - start)


def flops_per_sample(model: AMP, batch_size: int = 4) -> dict[str, float]:
    """Matmul FLOPs (FlopCounterMode) of one training step and of one clean forward (= the inference work)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = make_batches(1, batch_size)[0]
    fabric = Fabric(accelerator="cpu", devices=1)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.training_step(batch, StepContext(fabric, 0, 0, 1))
    train = counter.get_total_flops() / batch_size / 1e9
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:  # train mode with grad: eval's fused path hides its matmuls
        x, masks = model._inputs(batch)
        model.fuse_and_classify(model.encode_unimodal(model.embed_inputs(x, batch), masks), masks)
    return {"train_gflop_per_sample": round(train, 2), "infer_gflop_per_sample": round(counter.get_total_flops() / batch_size / 1e9, 2)}


def run_one(mode: str, batch_size: int, config: str) -> dict[str, Any]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model_cfg, train_cfg = preset_configs(CONFIGS[config])
    model = AMP(model_cfg, spec())
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {"mode": mode, "batch": batch_size, "config": config, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if mode == "train":
        steps, warmup = (10, 2) if batch_size <= 64 else (3, 1)
        out["samples_per_s"] = measure_train(model, train_cfg, batch_size, steps, warmup)
        out["steps"] = steps
    elif mode == "infer":
        out["samples_per_s"] = measure_infer(model, batch_size, 640, 2)
    else:
        out.update(flops_per_sample(model))
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(values: list[float]) -> str:
        return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})" if values else "-"

    return {
        "samples_per_s": stat([r["samples_per_s"] for r in rows if "samples_per_s" in r]),
        "peak_rss_gib": stat([r["peak_rss_gib"] for r in rows]),
        "load_1min": [r["load_1min"] for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=["train", "infer", "flops"], help="run one measurement in this process and print JSON")
    parser.add_argument("--only", choices=["train", "infer", "flops"], help="driver: only this kind of measurement")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.batch, args.config)))
        return
    plan = [(args.config, args.only, args.batch)] if args.only else PLAN
    results: dict[str, Any] = {"official": OFFICIAL, "threads": 2, "measurements": {}}
    if args.out.is_file():  # keep earlier measurements of other configurations
        results["measurements"] = json.loads(args.out.read_text()).get("measurements", {})
    for config, mode, batch in plan:
        rows = []
        for _ in range(1 if mode == "flops" else args.repeats):
            cmd = [sys.executable, __file__, "--one", mode, "--batch", str(batch), "--config", config]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:  # e.g. killed when out of memory: recorded, not fatal
                rows.append({"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        key = f"{config}/{mode}/bs{batch}"
        ok = [r for r in rows if "error" not in r]
        results["measurements"][key] = {"runs": rows, **(summarize(ok) if mode != "flops" and ok else {})}
        print(key, json.dumps(results["measurements"][key]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
