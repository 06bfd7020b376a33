"""mmer report --run RUN_DIR --out DIR [--tsne-samples N] [--seed S] [--root DIR]"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a run's analysis figures (PNG; needs matplotlib)",
        description="Write the figures of a finished run: training curves, per-label scores, label co-occurrence and, "
        "where the model's analysis() provides them, t-SNE, modality-to-label, label-correlation and discriminator plots. "
        "See docs/report.md.",
    )
    p.add_argument("--run", required=True, help="run directory written by `mmer train` or `mmer benchmark`")
    p.add_argument("--out", required=True, help="folder for the PNG files and index.md")
    p.add_argument("--tsne-samples", type=int, default=300, help="test samples drawn for the t-SNE plots (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the t-SNE sample and embedding")
    p.add_argument("--root", default=None, help="dataset folder, if it moved since training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmer.errors import ConfigError
    from mmer.report import plotting

    plotting.require_matplotlib("mmer report")  # before any slow loading
    if args.tsne_samples < 10:
        raise ConfigError(f"--tsne-samples must be >= 10, got {args.tsne_samples}")
    from mmer.report.builder import build_report

    report = build_report(args.run, args.out, args.tsne_samples, args.seed, args.root)
    for path in report.written:
        print(f"wrote {path}")
    for name, reason in report.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"index: {args.out}/index.md")
    return 0
