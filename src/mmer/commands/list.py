"""mmer list {models,datasets}"""

from __future__ import annotations

import argparse

from mmer.registry import DATASETS, MODELS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models or datasets", description="List registered models or datasets.")
    p.add_argument("what", choices=["models", "datasets"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = MODELS if args.what == "models" else DATASETS
    width = max((len(e.name) for e in registry), default=0)
    for entry in registry:
        print(f"{entry.name:<{width}}  {entry.summary}")
    return 0
