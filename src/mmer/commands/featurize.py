"""mmer featurize text --input FILE.csv --column text --encoder glove-50|minilm --out FILE"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mmer.errors import MMERError
from mmer.featurize.encoders import DEFAULT_MAX_LEN, ENCODERS, POOLINGS, TextEncoding, featurize_texts
from mmer.featurize.files import read_text_csv, write_text_features


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "featurize", help="turn raw inputs into modality features", description="Turn raw inputs into modality features."
    )
    fsub = p.add_subparsers(dest="featurize_command", metavar="KIND", required=True)
    pooling_help = "; ".join(f"{e}: {', '.join(POOLINGS[e])} (default {POOLINGS[e][0]})" for e in ENCODERS)
    t = fsub.add_parser(
        "text",
        help="transcripts in a CSV column -> text features (.npz)",
        description="Featurise the transcripts of one CSV column into a text modality (see docs/text.md). "
        "Output: an .npz with ids [N], feat.text float32 [N, L, D], mask.text bool [N, L] and meta (JSON).",
    )
    t.add_argument("--input", required=True, help="UTF-8 CSV file with a header row")
    t.add_argument("--column", required=True, help="column holding the transcripts")
    t.add_argument("--id-column", default=None, help="column with unique row ids (default: 0-based row number)")
    t.add_argument("--encoder", required=True, choices=ENCODERS, help="glove-50 (GloVe 6B-50d) or minilm (all-MiniLM-L6-v2)")
    t.add_argument("--pooling", default=None, help=f"output pooling; {pooling_help}")
    t.add_argument(
        "--max-len",
        type=int,
        default=None,
        help="tokens kept per text, the rest is cut off: words for glove-50 (default "
        f"{DEFAULT_MAX_LEN['glove-50']}), word pieces for minilm (default {DEFAULT_MAX_LEN['minilm']})",
    )
    t.add_argument("--oov", default="zero", choices=("zero", "skip"), help="glove-50: unknown words as zero vectors (default) or dropped")
    t.add_argument("--batch-size", type=int, default=64, help="minilm: texts per forward pass (default 64)")
    t.add_argument("--out", required=True, help="output .npz file")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    t.set_defaults(func=run_text)


def run_text(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise MMERError(f"{out} already exists; pass --overwrite to replace it")
    encoding = TextEncoding(args.encoder, args.pooling, args.max_len, args.oov, args.batch_size).resolved()
    ids, texts = read_text_csv(args.input, args.column, args.id_column)
    start = time.perf_counter()
    feats, mask = featurize_texts(texts, encoding)
    seconds = time.perf_counter() - start
    meta = {**encoding.describe(), "input": Path(args.input).name, "column": args.column}
    write_text_features(out, ids, feats, mask, meta, overwrite=args.overwrite)
    empty = int((~mask.any(axis=1)).sum())
    print(
        f"wrote {out}: {len(ids)} texts -> feat.text {list(feats.shape)} ({encoding.encoder}, pooling "
        f"{encoding.pooling}, max_len {encoding.max_len}) in {seconds:.1f} s; {empty} without any token"
    )
    full = int(mask.all(axis=1).sum()) if encoding.pooling == "tokens" and mask.shape[1] == encoding.max_len else 0
    if full:
        print(f"{full} texts filled all {encoding.max_len} steps (the tokens of longer ones beyond that were cut)")
    return 0
