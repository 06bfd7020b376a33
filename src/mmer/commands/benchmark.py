"""mmer benchmark --models A,B --datasets D1,D2 --seeds 1,2,3 --out DIR [...]"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mmer.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="train models x datasets x seeds (and ablations) and write paper-style tables",
        description="Run a grid of trainings (complete runs in --out are skipped, interrupted ones resumed), then write "
        "results.csv and summary.md/.csv/.tex with mean ± sample std over seeds. See docs/benchmark.md.",
    )
    p.add_argument("--models", required=True, help="comma-separated registered models, e.g. ramer,carat,baseline")
    p.add_argument("--datasets", required=True, help="comma-separated registered datasets, e.g. synth-party,synth-dyadic")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--epochs", type=int, default=None, help="train.epochs for every run (default: each preset's)")
    p.add_argument("--out", required=True, help="benchmark folder (runs/, results.csv, summary.*)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run (repeatable)")
    p.add_argument("--root", action="append", default=[], metavar="DATASET=DIR", help="data folder of a dataset (repeatable)")
    p.add_argument("--ablations", action="append", default=[], metavar="FILE", help="ablation file (path or shipped name, repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="A,B", help="paired comparison of two models over shared seeds (repeatable)")
    p.add_argument("--missing-matrix", action="store_true", help="also evaluate every run (plain models) with modalities missing")
    p.add_argument("--missing-repeats", type=int, default=1, help="seeds averaged per missing rate (with --missing-matrix)")
    p.add_argument("--table-style", default="auto", choices=["auto", "mosei", "memor", "all"], help="table columns (default: by dataset)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed run (default: report it and go on)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (what is complete, to resume, to train) and stop")
    p.set_defaults(func=run)


def split_list(text: str, flag: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{flag} needs at least one value, got {text!r}")
    return items


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in split_list(text, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None


def parse_roots(items: list[str]) -> dict[str, str]:
    roots = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--root expects DATASET=DIR, got {item!r}")
        roots[name] = str(Path(folder).resolve())
    return roots


def parse_pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        names = split_list(item, "--compare")
        if len(names) != 2 or names[0] == names[1]:
            raise ConfigError(f"--compare expects two different names A,B, got {item!r}")
        pairs.append((names[0], names[1]))
    return pairs


def canonical_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this benchmark (quoted in summary.md)."""
    parts = ["mmer", "benchmark", "--models", args.models, "--datasets", args.datasets, "--seeds", args.seeds]
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    parts += ["--out", args.out]
    for flag, values in (("--set", args.set), ("--root", args.root), ("--ablations", args.ablations), ("--compare", args.compare)):
        for value in values:
            parts += [flag, value]
    if args.missing_matrix:
        parts += ["--missing-matrix"] + (["--missing-repeats", str(args.missing_repeats)] if args.missing_repeats != 1 else [])
    if args.table_style != "auto":
        parts += ["--table-style", args.table_style]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from mmer.benchmark.runner import BenchmarkSpec, run_benchmark

    datasets = split_list(args.datasets, "--datasets")
    roots = parse_roots(args.root)
    for name in roots:
        if name not in datasets:
            raise ConfigError(f"--root names dataset '{name}', which is not in --datasets ({', '.join(datasets)})")
    spec = BenchmarkSpec(
        out=Path(args.out),
        models=split_list(args.models, "--models"),
        datasets=datasets,
        seeds=parse_seeds(args.seeds),
        epochs=args.epochs,
        overrides=list(args.set),
        roots=roots,
        ablations=list(args.ablations),
        compare=parse_pairs(args.compare),
        missing_matrix=args.missing_matrix,
        missing_repeats=args.missing_repeats,
        table_style=args.table_style,
        fail_fast=args.fail_fast,
        dry_run=args.dry_run,
        command=canonical_command(args),
    )
    result = run_benchmark(spec)
    if result.failures:
        print(f"mmer: {len(result.failures)} run(s) failed:", file=sys.stderr)
        for failure in result.failures:
            print(f"  {failure.run} ({failure.run_dir}): {failure.message}", file=sys.stderr)
        return 1
    return 0
