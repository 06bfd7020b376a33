"""mmer data {synth,check}"""

from __future__ import annotations

import argparse

from mmer.data.dataset import DatasetBundle
from mmer.data.load import load_dataset
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

    from mmer.data.npz_format import write_npz_dir
    from mmer.data.synthetic import generate
    from mmer.errors import DataError

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty; refusing to overwrite it")
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
    from mmer.errors import ConfigError

    DATASETS.get(args.dataset)  # unknown name -> clear error before any file access
    for text in args.set:
        if not text.startswith("data.options."):
            raise ConfigError(f"--set {text}: `mmer data check` takes dataset options only (data.options.KEY=VALUE)")
    # the dataset's own defaults (no model preset applies here) plus --set, validated like `mmer train`
    options = cfglib.resolve("baseline", args.dataset, overrides=args.set, presets=False).data.options
    bundle = load_dataset(args.dataset, args.root, options)
    print(summarize(bundle))
    print("OK: every split, field and shape is sound")
    return 0


def summarize(bundle: DatasetBundle) -> str:
    spec = bundle.spec
    lines = [f"dataset {spec.name} ({bundle.source})"]
    lines.append(f"labels ({spec.num_labels}): {', '.join(spec.label_names)}")
    if spec.multi_party:
        lines.append(
            f"multi-party: up to {spec.max_persons} persons x {spec.max_segments} segments per clip; "
            f"personality dim {spec.personality_dim}"
        )
    lines.append("")
    where = "target token" if spec.multi_party else "sample"
    lines.append(f"modality shapes are [clips, tokens, dim]; (present) = share of samples whose {where} has the modality")
    lines.append("| split | samples | clips | " + " | ".join(f"{m} (present)" for m in spec.modality_names) + " |")
    lines.append("|---|---:|---:|" + "---|" * len(spec.modalities))
    for name, split in bundle.splits.items():
        cells = []
        rows = split.clip_index
        for m in spec.modality_names:
            mask = split.masks[m][rows]  # [N, L]
            if split.target is not None:
                mask = mask & split.target
            present = mask.any(dim=1).float().mean().item()
            cells.append(f"{list(split.features[m].shape)} ({present:.0%})")
        lines.append(f"| {name} | {len(split)} | {split.num_clips} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("positive rate per label:")
    lines.append("| split | " + " | ".join(spec.label_names) + " | labels/sample | empty |")
    lines.append("|---|" + "---:|" * (spec.num_labels + 2))
    for name, split in bundle.splits.items():
        rates = split.labels.mean(dim=0).tolist()
        per_sample = split.labels.sum(dim=1)
        lines.append(
            f"| {name} | " + " | ".join(f"{r:.3f}" for r in rates)
            + f" | {per_sample.mean().item():.2f} | {(per_sample == 0).float().mean().item():.1%} |"
        )
    if bundle.reference:
        lines.append("")
        lines.append("reference points (test split):")
        for ref, metrics in bundle.reference.items():
            if isinstance(metrics, dict):
                shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
                lines.append(f"  {ref}: {shown}")
    return "\n".join(lines)
