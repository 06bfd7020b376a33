"""mmer data {synth,check}"""

from __future__ import annotations

import argparse

from mmer.data.load import load_dataset
from mmer.data.summary import summarize
from mmer.registry import DATASETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate or check datasets", description="Generate the synthetic benchmark or check a dataset.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("synth", help="write a synthetic benchmark to disk (mmer-npz format)")
    s.add_argument("--preset", required=True, help="synth-party or synth-dyadic")
    s.add_argument("--out", required=True, help="new or empty directory to write")
    s.add_argument("--seed", type=int, default=None, help="generator seed (default: the preset's fixed seed)")
    s.add_argument("--size", default="default", help="tiny (tests), default (benchmark) or large")
    s.add_argument("--quiet", action="store_true", help="print only the output directory")
    s.set_defaults(func=run_synth)

    c = dsub.add_parser("check", help="validate a dataset and summarise it")
    c.add_argument("--dataset", required=True, help="registered dataset name (see `mmer list datasets`)")
    c.add_argument("--root", default=None, help="folder with the dataset's files (synthetic data: optional)")
    c.add_argument("--set", action="append", default=[], metavar="data.options.KEY=VALUE", help="a dataset option (repeatable), as for `mmer train`")
    c.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmer.data.npz_format import check_output_dir, write_npz_dir
    from mmer.data.synthetic import generate

    out = Path(args.out)
    check_output_dir(out)  # before the generation, not after
    bundle = generate(args.preset, seed=args.seed, size=args.size)
    write_npz_dir(bundle, args.out)
    if args.quiet:
        print(args.out)
    else:
        print(f"wrote {args.preset} ({args.size}) to {args.out}")
        print(summarize(bundle))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from mmer import config as cfglib

    DATASETS.get(args.dataset)  # unknown name -> clear error before any file access
    options = cfglib.dataset_options(args.dataset, args.set)
    bundle = load_dataset(args.dataset, args.root, options)
    print(summarize(bundle))
    print("OK: every split, field and shape is sound")
    return 0
