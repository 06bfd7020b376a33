"""Reference points of the synthetic benchmark: the oracles and simple scikit-learn models, on the test split.

Prints, per preset, one markdown table of the project's metrics (threshold 0.5):
- the stored references (`chance`, `target_only`, `ceiling`; see docs/synthetic.md);
- extra oracles: synth-party `context_known` (the true emotions of every other token given: a strict upper
  reference) and the ceiling with one modality ignored; synth-dyadic the ceiling from one modality alone;
- logistic regression (one-vs-rest, standardised inputs) on hand-made summaries:
  synth-party `lr_target` (the target token's features, presence flags, personality, role) and
  `lr_target_context` (+ the same person's previous/next segment, the segment's speaker, clip means);
  synth-dyadic `lr_mean` (masked mean per modality) and `lr_mean_max` (+ masked max).
Timings are wall-clock seconds on this machine (report `uptime` with them). Usage:

    .venv/bin/python benchmarks/synthetic_references.py [--preset synth-party] [--size default] [--seed N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmer.data.dataset import SplitData
from mmer.data.synthetic import PRESETS, draw, dyadic, generate, party
from mmer.data.synthetic.oracle import dyadic_posterior, party_posterior
from mmer.data.synthetic.reference import oracle_scores
from mmer.metrics import METRIC_KEYS


def party_summaries(split: SplitData) -> dict[str, np.ndarray]:
    grid, cells = party.grid_from_split(split)
    k, p, s = cells.T

    def token(pp: np.ndarray, ss: np.ndarray) -> np.ndarray:
        ok = (ss >= 0) & (ss < grid.valid.shape[2])
        ss = ss.clip(0, grid.valid.shape[2] - 1)
        parts = []
        for m in party.MODALITIES:
            parts += [grid.features[m][k, pp, ss] * ok[:, None], (grid.present[m][k, pp, ss] & ok)[:, None]]
        return np.concatenate(parts, axis=1)

    target = np.concatenate([token(p, s), grid.personality[k, p], grid.is_speaker()[k, p, s][:, None]], axis=1)
    means = [grid.features[m].sum(axis=(1, 2)) / np.maximum(grid.present[m].sum(axis=(1, 2)), 1)[:, None] for m in party.MODALITIES]
    context = np.concatenate([target, token(p, s - 1), token(p, s + 1), token(grid.speaker[k, s], s), *(x[k] for x in means)], axis=1)
    return {"lr_target": target, "lr_target_context": context}


def dyadic_summaries(split: SplitData) -> dict[str, np.ndarray]:
    mean, peak = [], []
    for m in dyadic.MODALITIES:
        x, mask = split.features[m].numpy(), split.masks[m].numpy()[..., None]
        mean.append((x * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1))
        peak.append(np.where(mask, x, -np.inf).max(axis=1))
    return {"lr_mean": np.concatenate(mean, axis=1), "lr_mean_max": np.concatenate(mean + peak, axis=1)}


def logistic_probs(train: np.ndarray, y_train: np.ndarray, test: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=3000)))
    model.fit(train, y_train)
    return model.predict_proba(test)


def party_groups(split: SplitData) -> dict[str, np.ndarray]:
    """bool [N] per kind of target: the speaker, a listener whose face is visible, a listener with nothing."""
    grid, cells = party.grid_from_split(split)
    k, p, s = cells.T
    speaker, face = grid.is_speaker()[k, p, s], grid.present["visual"][k, p, s]
    return {"speaker": speaker, "listener, face visible": ~speaker & face, "listener, nothing observed": ~speaker & ~face}


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}\n\n| reference | " + " | ".join(METRIC_KEYS) + " |")
    print("|---|" + "---:|" * len(METRIC_KEYS))
    for name, metrics in rows.items():
        print(f"| {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in METRIC_KEYS) + " |")


def run(preset: str, size: str, seed: int | None) -> dict[str, dict[str, float]]:
    t0 = time.perf_counter()
    bundle = generate(preset, seed, size)
    timings = {"generate (incl. references)": time.perf_counter() - t0}
    d = draw(preset, seed, size)  # the same latent truth as `bundle`
    train, test = bundle.splits["train"], bundle.splits["test"]
    names = bundle.spec.label_names
    y_train, y_test = (s.labels.numpy().astype(int) for s in (train, test))
    probs: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    if preset == "synth-party":
        probs["target_only"] = party_posterior(d.world, test, "none")
        probs["ceiling"] = party_posterior(d.world, test, "inferred")
        probs["context_known"] = party_posterior(d.world, test, "known", emotions=d.parts["test"].emotions)
        for m in party.MODALITIES:
            kept = [x for x in party.MODALITIES if x != m]
            probs[f"ceiling_without_{m}"] = party_posterior(d.world, test, "inferred", kept)
        summaries = party_summaries
    else:
        probs["late_fusion"] = dyadic_posterior(d.world, test, fusion="late")
        probs["ceiling"] = dyadic_posterior(d.world, test)
        for m in dyadic.MODALITIES:
            probs[f"ceiling_{m}_only"] = dyadic_posterior(d.world, test, [m])
        summaries = dyadic_summaries
    timings["oracles"] = time.perf_counter() - t0
    features_train, features_test = summaries(train), summaries(test)
    for name in features_train:
        t0 = time.perf_counter()
        probs[name] = logistic_probs(features_train[name], y_train, features_test[name])
        timings[f"fit {name}"] = time.perf_counter() - t0
    rows = {"chance": bundle.reference["chance"], **{name: oracle_scores(p, y_test, names) for name, p in probs.items()}}
    for name in bundle.reference:  # the stored references are what the oracles give here
        assert rows[name] == bundle.reference[name], name
    counts = {split: len(s) for split, s in bundle.splits.items()}
    print_table(f"## {preset} (size {size}, seed {d.seed}): samples {counts}", rows)
    if preset == "synth-party":
        groups = party_groups(test)
        print("\nmicro-F1 by kind of target (share of test samples):\n")
        print("| reference | " + " | ".join(f"{g} ({sel.mean():.0%})" for g, sel in groups.items()) + " |")
        print("|---|" + "---:|" * len(groups))
        for name in ("target_only", "ceiling", "context_known", "lr_target", "lr_target_context"):
            cells = [oracle_scores(probs[name][sel], y_test[sel], names)["micro_f1"] for sel in groups.values()]
            print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print("\nseconds: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()) + f" (load {os.getloadavg()[0]:.2f})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*PRESETS, "both"], default="both")
    parser.add_argument("--size", default="default", choices=["tiny", "default", "large"])
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: each preset's own)")
    parser.add_argument("--json", default=None, help="also write every row to this JSON file")
    args = parser.parse_args()
    presets = list(PRESETS) if args.preset == "both" else [args.preset]
    results = {preset: run(preset, args.size, args.seed) for preset in presets}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
