"""One row per finished run: what `DIR/results.csv` holds and every table is computed from.

Columns: model, variant, entry, dataset, seed, overrides, the test metrics (metrics.METRIC_KEYS), parameters,
best_epoch, train_seconds (sum of the per-epoch training time in history.csv, so it survives a resume),
wall_seconds (the whole last `fit` call: loading, training, evaluation), peak_rss_mb and run_dir.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from mmer.benchmark.grid import RunSpec
from mmer.data.dataset import DatasetBundle
from mmer.engine import rundir
from mmer.io import write_text
from mmer.metrics import METRIC_KEYS, compute_metrics

COLUMNS = (
    "model", "variant", "entry", "dataset", "seed", "overrides", *METRIC_KEYS,
    "parameters", "best_epoch", "train_seconds", "wall_seconds", "peak_rss_mb", "run_dir",
)  # fmt: skip


def train_seconds(run_dir: Path) -> float:
    """Sum of history.csv's per-epoch `train_seconds` (0 when the column is absent)."""
    if not (run_dir / rundir.HISTORY).is_file():
        return 0.0
    rows = rundir.read_history(run_dir)
    return round(sum(float(r["train_seconds"]) for r in rows if r.get("train_seconds")), 3)


def collect_row(spec: RunSpec, run_dir: Path, out: Path) -> dict[str, Any]:
    """The results.csv row of a complete run."""
    test = rundir.read_test_metrics(run_dir)
    info = rundir.read_json(run_dir / rundir.RUN_INFO) if (run_dir / rundir.RUN_INFO).is_file() else {}
    row: dict[str, Any] = {
        "model": spec.model,
        "variant": spec.variant,
        "entry": spec.entry,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "overrides": " ".join(spec.overrides),
    }
    row.update({k: float(test[k]) for k in METRIC_KEYS})
    row.update(
        parameters=info.get("parameters", ""),
        best_epoch=info.get("best_epoch", ""),
        train_seconds=train_seconds(run_dir),
        wall_seconds=info.get("wall_seconds", ""),
        peak_rss_mb=info.get("peak_rss_mb", ""),
        run_dir=str(run_dir.relative_to(out)) if run_dir.is_relative_to(out) else str(run_dir),
    )
    return row


def reference_points(run_dir: Path) -> dict[str, dict[str, float]]:
    """The dataset's reference points stored with a run (e.g. chance / ceiling of synthetic data), as
    name -> {metric: value} for the metrics present; {} when the dataset has none."""
    path = run_dir / rundir.RUN_INFO
    if not path.is_file():
        return {}
    reference = rundir.read_json(path).get("reference") or {}
    points = {}
    for name, metrics in reference.items():
        if isinstance(metrics, dict):
            values = {k: float(v) for k, v in metrics.items() if k in METRIC_KEYS and isinstance(v, (int, float))}
            if values:
                points[str(name)] = values
    return points


def merge_reference_points(per_run: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]] | None:
    """The reference points of one dataset over its runs: the union of their names (a run trained before a
    reference was added lacks it), or None when two runs give the same name different values (different data).
    The names keep the order of the run that has the most of them (the generator's order: chance ... ceiling)."""
    merged: dict[str, dict[str, float]] = {}
    for points in sorted(per_run, key=len, reverse=True):
        for name, values in points.items():
            if merged.setdefault(name, values) != values:
                return None
    return merged


def majority_reference(bundle: DatasetBundle, split: str = "test") -> dict[str, dict[str, float]]:
    """The trivial reference of real data: predict the training split's most frequent label (alone) for every
    sample of `split`. Returns {"majority label: <name>": {metric: value}}, the form of `reference_points`."""
    counts = bundle.splits["train"].labels.sum(dim=0)
    top = int(counts.argmax())
    truth = bundle.splits[split].labels.numpy()
    predicted = np.zeros_like(truth)
    predicted[:, top] = 1
    metrics = compute_metrics(truth, predicted, bundle.spec.label_names)
    return {f"majority label: {bundle.spec.label_names[top]}": {k: float(metrics[k]) for k in METRIC_KEYS}}


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(k, row.get(k, "")) for k in COLUMNS})
    return buf.getvalue()


def write_results(rows: list[dict[str, Any]], path: Path) -> None:
    write_text(path, results_csv(rows))


def _fmt(key: str, value: Any) -> Any:
    return f"{value:.6f}" if key in METRIC_KEYS and isinstance(value, float) else value
