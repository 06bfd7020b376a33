"""mmer train --model M --dataset D --out RUN_DIR [...]"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmer import config as cfglib
from mmer.engine import rundir
from mmer.engine.checkpoint import load_checkpoint
from mmer.errors import ConfigError
from mmer.metrics import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train and evaluate a model", description="Train a model, select it on validation, test the best checkpoint.")
    p.add_argument("--model", help="registered model (see `mmer list models`); optional with --resume")
    p.add_argument("--dataset", help="registered dataset (see `mmer list datasets`); optional with --resume")
    p.add_argument("--root", default=None, help="folder with the dataset's files (synthetic data: optional)")
    p.add_argument("--config", default=None, help="YAML file applied on top of the preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key, e.g. train.lr=1e-4 (repeatable)")
    p.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--devices", type=int, default=None, help="processes per node for data-parallel training")
    p.add_argument("--precision", choices=["32", "bf16", "16-mixed"], default=None)
    p.add_argument("--fast-dev-run", action="store_true", help="run one batch of each split; write nothing but a log")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars, log lines or Lightning set-up lines on the terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.engine.trainer import fit

    out = Path(args.out)
    if args.resume:
        return _resume(args, out, fit)
    if not args.model or not args.dataset:
        raise ConfigError("--model and --dataset are required (unless --resume)")
    flags = {
        "data.root": str(Path(args.root).resolve()) if args.root else None,
        "train.seed": args.seed,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.devices": args.devices,
        "train.precision": args.precision,
    }
    cfg = cfglib.resolve(args.model, args.dataset, args.config, args.set, flags)
    metrics = fit(cfg, out, fast_dev_run=args.fast_dev_run, quiet=args.quiet)
    if metrics:
        print(format_table(metrics))
    return 0


def _resume(args: argparse.Namespace, out: Path, fit: Callable[..., dict[str, Any]]) -> int:
    changed = args.config or args.set or args.fast_dev_run or any(v is not None for v in (args.root, args.seed, args.epochs, args.device, args.precision, args.devices))
    if changed:
        raise ConfigError(
            "--resume continues a run with its saved config; drop --config/--set/--root/--seed/--epochs/--device/"
            "--devices/--precision/--fast-dev-run"
        )
    if not out.is_dir():
        raise ConfigError(f"--resume: {out} does not exist, so there is no run to continue")
    saved = load_checkpoint(out / rundir.LAST) if (out / rundir.LAST).is_file() else None
    if saved is not None:
        for flag, key in ((args.model, "model_name"), (args.dataset, None)):
            have = saved["config"]["model_name"] if key else saved["config"]["data"]["name"]
            if flag and flag != have:
                raise ConfigError(f"--resume: {out} is a run of '{have}', not '{flag}'")
    if rundir.is_complete(out):
        print(f"{out} is already complete; its metrics:")
        print(format_table(rundir.read_json(out / rundir.METRICS)))
        return 0
    metrics = fit(None, out, resume=True, quiet=args.quiet)
    if metrics:
        print(format_table(metrics))
    return 0
