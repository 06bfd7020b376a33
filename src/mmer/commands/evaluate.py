"""mmer evaluate --run RUN_DIR [--split test] [--drop-modalities t,a] [--missing-rate R] [--missing-matrix]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmer.engine.trainer import evaluate_run, load_run, load_run_data
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
    p.add_argument("--root", default=None, help="read the run's dataset from this folder (default: the run's saved root), e.g. after moving it")
    m = p.add_argument_group("missing-modality matrix (docs/report.md)")
    m.add_argument("--missing-matrix", action="store_true", help="evaluate every non-empty subset of modalities and missing rates 0..0.9; write tables and a plot")
    m.add_argument("--missing-repeats", type=int, default=1, help="average the random dropping over this many seeds (from --missing-seed)")
    m.add_argument("--out", default=None, help="folder for the matrix outputs (default RUN/robustness)")
    p.set_defaults(func=run)


def resolve_modalities(text: str, available: tuple[str, ...]) -> list[str]:
    """'t,a' or 'text,audio' -> full modality names (a unique prefix is enough)."""
    names = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        matches = [m for m in available if m == part] or [m for m in available if m.startswith(part)]
        if len(matches) != 1:
            raise ConfigError(unknown_name("modality in --drop-modalities", part, available))
        if matches[0] in names:
            raise ConfigError(f"--drop-modalities names {matches[0]} twice ({text!r})")
        names.append(matches[0])
    return names


def run(args: argparse.Namespace) -> int:
    from mmer.report.robustness import missing_transform

    if args.missing_matrix:
        return _matrix(args)
    if args.out is not None or args.missing_repeats != 1:
        raise ConfigError("--out and --missing-repeats belong to --missing-matrix")
    loaded = load_run(args.run)
    spec = loaded.spec
    dropped = resolve_modalities(args.drop_modalities, spec.modality_names)
    if dropped and len(dropped) == len(spec.modality_names):
        raise ConfigError("--drop-modalities removes every modality; keep at least one")
    if not 0.0 <= args.missing_rate < 1.0:
        raise ConfigError(f"--missing-rate must be in [0, 1), got {args.missing_rate}")
    transform = missing_transform(dropped, args.missing_rate, args.missing_seed)
    metrics = evaluate_run(loaded, args.split, transform, load_run_data(loaded, args.root))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        label = args.split + (f" without {','.join(dropped)}" if dropped else "") + (f" missing {args.missing_rate:.0%}" if args.missing_rate else "")
        print(format_table({label: metrics}))
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from mmer.report import plotting, robustness

    if args.drop_modalities or args.missing_rate:
        raise ConfigError("--missing-matrix evaluates every subset and rate itself; drop --drop-modalities/--missing-rate")
    if args.missing_repeats < 1:
        raise ConfigError(f"--missing-repeats must be >= 1, got {args.missing_repeats}")
    out = Path(args.out) if args.out else Path(args.run) / robustness.RUN_SUBDIR
    robustness.check_output(out)  # before the evaluations, not after
    loaded = load_run(args.run)
    bundle = load_run_data(loaded, args.root)
    result = robustness.robustness_matrix(loaded, str(args.run), args.split, args.missing_seed, args.missing_repeats, bundle)
    written = robustness.write(result, out)
    if args.json:
        print(json.dumps({"subsets": result.subsets, "rates": result.rates}, indent=2))
    else:
        print(robustness.to_markdown(result), end="")
        print("\nwrote " + ", ".join(str(p) for p in written))
    if not plotting.has_matplotlib():
        print(f"no plot: matplotlib is not installed ({plotting.INSTALL_HINT})")
    return 0
