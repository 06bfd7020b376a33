"""mmer evaluate --run RUN_DIR [--split test] [--drop-modalities t,a] [--missing-rate R]"""

from __future__ import annotations

import argparse
import json

import torch

from mmer.data.batch import Batch
from mmer.data.transforms import drop_at_rate, drop_modalities
from mmer.engine.trainer import evaluate_run, load_run
from mmer.errors import ConfigError, unknown_name
from mmer.metrics import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run (optionally with modalities removed)", description="Reload best.pt and evaluate it on a split.")
    p.add_argument("--run", required=True, help="run directory written by `mmer train`")
    p.add_argument("--split", default="test", help="train, valid or test (default test)")
    p.add_argument("--drop-modalities", default="", help="comma-separated modalities to remove, e.g. t,a or text,audio")
    p.add_argument("--missing-rate", type=float, default=0.0, help="also drop each (sample, modality) with this probability")
    p.add_argument("--missing-seed", type=int, default=0, help="seed of the random dropping")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(func=run)


def resolve_modalities(text: str, available: tuple[str, ...]) -> list[str]:
    """'t,a' or 'text,audio' -> full modality names (a unique prefix is enough)."""
    names = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        matches = [m for m in available if m == part] or [m for m in available if m.startswith(part)]
        if len(matches) != 1:
            raise ConfigError(unknown_name("modality in --drop-modalities", part, available))
        names.append(matches[0])
    return names


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run)
    spec = loaded.spec
    dropped = resolve_modalities(args.drop_modalities, spec.modality_names)
    if dropped and len(dropped) == len(spec.modality_names):
        raise ConfigError("--drop-modalities removes every modality; keep at least one")
    if not 0.0 <= args.missing_rate < 1.0:
        raise ConfigError(f"--missing-rate must be in [0, 1), got {args.missing_rate}")

    def transform(batch: Batch) -> Batch:
        if dropped:
            batch = drop_modalities(batch, dropped)
        if args.missing_rate:
            gen = torch.Generator().manual_seed(args.missing_seed * 1_000_003 + int(batch.index[0]))
            batch = drop_at_rate(batch, args.missing_rate, gen)
        return batch

    metrics = evaluate_run(loaded, args.split, transform if (dropped or args.missing_rate) else None)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        label = args.split + (f" without {','.join(dropped)}" if dropped else "") + (f" missing {args.missing_rate:.0%}" if args.missing_rate else "")
        print(format_table({label: metrics}))
    return 0
