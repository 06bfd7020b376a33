"""mmer predict --run RUN_DIR [--dataset D] [--root DIR] --out FILE.csv

Without --dataset the run's own data is read with the run's saved data options (and root, unless --root gives
another folder): the predictions are those of the data the run was trained and tested on. Another dataset of the
same format is read with its default options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmer.data.load import load_dataset
from mmer.engine import rundir
from mmer.engine.trainer import load_run, load_run_data, predict_run
from mmer.errors import MMERError
from mmer.io import write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="write per-sample predictions of a trained run", description="Apply a trained run to a dataset and write one CSV row per sample.")
    p.add_argument("--run", required=True, help="run directory written by `mmer train`")
    p.add_argument("--dataset", default=None, help="registered dataset name (default: the run's, with its saved data options)")
    p.add_argument("--root", default=None, help="folder with the dataset's files (default: the run's when --dataset is the run's)")
    p.add_argument("--split", default="test", help="which split to predict (default test)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise MMERError(f"--out {out} is a directory; give the CSV file to write")
    if out.exists() and not args.overwrite:
        raise MMERError(f"{out} already exists; pass --overwrite to replace it")
    loaded = load_run(args.run)
    if args.dataset is None or args.dataset == loaded.cfg.data.name:  # the run's data, as trained and tested on
        bundle = load_run_data(loaded, args.root)
    else:
        bundle = load_dataset(args.dataset, args.root)
    pred = predict_run(loaded, bundle, args.split)
    write_text(out, rundir.predictions_csv(pred.ids, pred.probs, pred.labels, list(bundle.spec.label_names), loaded.model.threshold), overwrite=args.overwrite)
    print(f"wrote {len(pred.ids)} predictions of {bundle.source}, split {args.split}, to {out}")
    return 0
