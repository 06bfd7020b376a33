"""mmer config show --model M --dataset D"""

from __future__ import annotations

import argparse

from mmer import config as cfglib


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show resolved configurations", description="Show the fully resolved configuration.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="print the resolved preset for a model and dataset as YAML")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--config", default=None, help="YAML file applied on top of the preset")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key (repeatable)")
    s.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    cfg = cfglib.resolve(args.model, args.dataset, args.config, args.set)
    preset = cfglib.preset_path(args.model, args.dataset)
    print(f"# preset: {preset if preset else 'none (model and dataset defaults)'}")
    print(cfg.to_yaml(), end="")
    return 0
