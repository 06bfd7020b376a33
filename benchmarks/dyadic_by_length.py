"""Test micro-F1 on synth-dyadic by sequence length: trained runs next to the Bayes oracles.

Answers where a model loses against the oracles: on short sequences (little evidence) or on long ones (evidence
that would have to be summed, not averaged). Rows:
- `ceiling`, `late_fusion`: the stored reference oracles (docs/synthetic.md);
- `mean_evidence`: the ceiling computed from the per-step evidence averaged over the steps (times the split's mean
  length) instead of summed: what a model that mean-pools its steps can know at best;
- one row per run folder given (its `predictions_test.csv` and the threshold of its `config.yaml`).
The runs must have been trained on the default generated synth-dyadic (no --root, default size and seed), so
that their test ids are the split's. Usage:

    .venv/bin/python benchmarks/dyadic_by_length.py runs/results/runs/synth-dyadic/{baseline,amp}/seed1
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import yaml

from mmer.data.synthetic import draw, dyadic
from mmer.data.synthetic.oracle import dyadic_posterior
from mmer.metrics import compute_metrics

BUCKETS = ((6, 9), (10, 13), (14, 17), (18, 20))


def run_probs(run: Path, ids: list[str]) -> tuple[np.ndarray, float]:
    """[N, C] test probabilities of a run folder, in split order, and its decision threshold."""
    with open(run / "predictions_test.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    if set(rows) != set(ids):
        raise SystemExit(f"{run / 'predictions_test.csv'}: its test ids are not those of the default synth-dyadic")
    probs = np.array([[float(rows[i][f"p_{name}"]) for name in dyadic.EMOTIONS] for i in ids])
    model = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("model", {})
    return probs, float(model.get("threshold", 0.5))


def micro_f1(labels: np.ndarray, probs: np.ndarray, threshold: float) -> float:
    return compute_metrics(labels, (probs >= threshold).astype(np.int64), dyadic.EMOTIONS)["micro_f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders trained on the default synth-dyadic")
    args = parser.parse_args()
    d = draw("synth-dyadic", None, "default")
    test = dyadic.to_split(d.parts["test"], "test")
    labels = test.labels.numpy().astype(np.int64)  # [N, C]
    lengths = test.masks["text"].numpy().sum(axis=1)  # [N]
    rows: dict[str, tuple[np.ndarray, float]] = {
        "ceiling": (dyadic_posterior(d.world, test), 0.5),
        "late_fusion": (dyadic_posterior(d.world, test, fusion="late"), 0.5),
        "mean_evidence": (dyadic_posterior(d.world, test, evidence="mean"), 0.5),
    }
    for run in args.runs:
        rows[str(run)] = run_probs(run, list(test.ids))
    header = ["rows", "all"] + [f"length {a}-{b} (n={int(((lengths >= a) & (lengths <= b)).sum())})" for a, b in BUCKETS]
    print("| " + " | ".join(header) + " |")
    print("|---" + "|---:" * (len(header) - 1) + "|")
    for name, (probs, threshold) in rows.items():
        cells = [micro_f1(labels, probs, threshold)]
        for a, b in BUCKETS:
            inside = (lengths >= a) & (lengths <= b)
            cells.append(micro_f1(labels[inside], probs[inside], threshold))
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
