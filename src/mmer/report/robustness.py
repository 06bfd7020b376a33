"""Missing-modality robustness of a trained run (`mmer evaluate --run R --missing-matrix`).

Two views of the same question, on one split (test by default):
- subsets: the metrics with exactly a given non-empty subset of the modalities kept; every other modality is
  dropped from every sample (a sample that lacks a modality in the data keeps lacking it).
- rates: each (sample, modality) cell present in the data is dropped with probability r = 0, 0.1, ..., 0.9,
  but every sample keeps at least one of its modalities (data/transforms.py `drop_at_rate`). The draw of each
  evaluation batch is seeded from (seed, index of the batch's first sample), exactly as `mmer evaluate
  --missing-rate r --missing-seed s` does, so every row can be reproduced with that command. With several
  repeats the seeds s, s+1, ... are averaged (std with ddof=1). Because of the keep-one rule the share of cells
  actually dropped is below r at high rates; it is reported as `effective_missing`.
A dropped modality has an all-False mask and zero features, so models that ignore masks are measured fairly.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmer.benchmark.stats import summarize
from mmer.benchmark.tables import Table
from mmer.data.batch import Batch
from mmer.data.dataset import DatasetBundle
from mmer.data.transforms import drop_at_rate, drop_modalities
from mmer.engine.trainer import BatchTransform, LoadedRun, evaluate_run, load_run_data
from mmer.io import make_output_dir, refuse_foreign_outputs, write_json, write_text
from mmer.metrics import METRIC_KEYS
from mmer.report import plotting

RATES = tuple(round(0.1 * i, 1) for i in range(10))
SHOWN = ("acc", "precision", "recall", "micro_f1", "macro_f1", "weighted_f1")
RUN_SUBDIR = "robustness"  # RUN/robustness/: where `evaluate --missing-matrix` and the benchmark write by default
RESULT_FILE = "robustness.json"
TABLE_FILES = (RESULT_FILE, "subsets.csv", "rates.csv", "robustness.md")  # written by `write`, in this order
PLOT_FILE = "robustness.png"  # with matplotlib


def missing_transform(dropped: Sequence[str] = (), rate: float = 0.0, seed: int = 0) -> BatchTransform | None:
    """The batch transform of `mmer evaluate --drop-modalities ... --missing-rate r --missing-seed s`."""
    dropped = list(dropped)
    if not dropped and not rate:
        return None

    def transform(batch: Batch) -> Batch:
        if dropped:
            batch = drop_modalities(batch, dropped)
        if rate:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + int(batch.index[0]))
            batch = drop_at_rate(batch, rate, gen)
        return batch

    return transform


class _CountDropped:
    """Wraps a transform and counts (sample, modality) cells present before and after it."""

    def __init__(self, transform: BatchTransform | None):
        self.transform = transform
        self.before = 0
        self.after = 0

    def __call__(self, batch: Batch) -> Batch:
        self.before += int(batch.present().sum())
        out = self.transform(batch) if self.transform is not None else batch
        self.after += int(out.present().sum())
        return out

    @property
    def dropped_share(self) -> float:
        return 1.0 - self.after / self.before if self.before else 0.0


def modality_subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, largest first, each in the dataset's modality order."""
    return [combo for k in range(len(names), 0, -1) for combo in itertools.combinations(names, k)]


@dataclass
class RobustnessResult:
    run: str
    split: str
    modalities: tuple[str, ...]
    seed: int
    repeats: int
    subsets: list[dict[str, Any]] = field(default_factory=list)  # {"present", "size", metric: value}
    rates: list[dict[str, Any]] = field(default_factory=list)  # {"rate", "effective_missing", metric, metric_std}

    def settings(self) -> dict[str, Any]:
        return {"split": self.split, "seed": self.seed, "repeats": self.repeats, "rates": list(RATES)}


def robustness_matrix(
    run: LoadedRun, run_name: str, split: str = "test", seed: int = 0, repeats: int = 1, bundle: DatasetBundle | None = None
) -> RobustnessResult:
    """Evaluate `run` on `split` with every non-empty subset of its modalities, and at each random missing rate
    (`repeats` seeded draws per rate > 0, averaged): what a model keeps when modalities go missing."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if bundle is None:
        bundle = load_run_data(run)
    names = run.spec.modality_names
    result = RobustnessResult(run_name, split, tuple(names), seed, repeats)

    def evaluate(transform: BatchTransform | None) -> tuple[dict[str, Any], float]:
        counter = _CountDropped(transform)
        metrics = evaluate_run(run, split, counter, bundle)
        return metrics, counter.dropped_share

    for subset in modality_subsets(names):
        metrics, _ = evaluate(missing_transform([m for m in names if m not in subset]))
        result.subsets.append({"present": "+".join(subset), "size": len(subset), **{k: metrics[k] for k in METRIC_KEYS}})
    for rate in RATES:
        draws = [evaluate(missing_transform(rate=rate, seed=seed + r)) for r in range(repeats if rate else 1)]
        row: dict[str, Any] = {"rate": rate, "effective_missing": float(np.mean([share for _, share in draws]))}
        for k in METRIC_KEYS:
            s = summarize([m[k] for m, _ in draws])
            row[k] = s.mean
            row[f"{k}_std"] = s.std if s.n > 1 else None
        result.rates.append(row)
    return result


# ------------------------------------------------------------------------------------------------ output


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in row.items()})
    return buf.getvalue()


def to_markdown(result: RobustnessResult) -> str:
    head = "| " + " | ".join(SHOWN) + " |"
    lines = [
        f"# Missing-modality robustness of {result.run}",
        "",
        f"Split `{result.split}`. A dropped modality has an all-False mask and zero features.",
        "",
        "## Modalities present",
        "",
        "| present | " + head[2:],
        "|---|" + "---:|" * len(SHOWN),
    ]
    for row in result.subsets:
        lines.append(f"| {row['present']} | " + " | ".join(f"{row[k]:.4f}" for k in SHOWN) + " |")
    repeats = f"mean over {result.repeats} seeds ({result.seed}..{result.seed + result.repeats - 1}), ± sample std (ddof=1)" if result.repeats > 1 else f"seed {result.seed}"
    lines += [
        "",
        "## Random per-sample dropping",
        "",
        f"Each (sample, modality) dropped with probability *rate*, keeping at least one modality per sample; {repeats}. "
        "*effective* = share of present cells actually dropped.",
        "",
        "| rate | effective | " + head[2:],
        "|---:|---:|" + "---:|" * len(SHOWN),
    ]
    for row in result.rates:
        cells = [f"{row[k]:.4f}" + (f" ± {row[f'{k}_std']:.4f}" if row.get(f"{k}_std") is not None else "") for k in SHOWN]
        lines.append(f"| {row['rate']:.1f} | {row['effective_missing']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: RobustnessResult, path: Path) -> Path:
    """Left: micro-/macro-F1 for each subset of present modalities; right: the same against the missing rate."""
    shown = (("micro_f1", "Micro-F1"), ("macro_f1", "Macro-F1"), ("acc", "Acc"))
    fig, (left, right) = plotting.new_figure(12, 4.6, 1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    labels = [row["present"] for row in result.subsets]
    x = np.arange(len(labels))
    width = 0.8 / len(shown)
    for i, (key, name) in enumerate(shown):
        left.bar(x + (i - (len(shown) - 1) / 2) * width, [row[key] for row in result.subsets], width, label=name, color=plotting.color(i))
    left.set_xticks(x, labels, rotation=30 if max(map(len, labels)) > 6 else 0, ha="right" if max(map(len, labels)) > 6 else "center")
    left.set_xlabel("modalities present")
    left.set_ylabel(f"{result.split} score")
    left.set_ylim(0, 1.12)
    left.set_yticks(np.linspace(0, 1, 6))
    left.set_title("(a) Every subset of modalities")
    left.grid(axis="y", alpha=0.3)
    left.legend(loc="upper center", ncol=len(shown), fontsize=8)
    rates = [row["rate"] for row in result.rates]
    for i, (key, name) in enumerate(shown):
        means = np.array([row[key] for row in result.rates])
        right.plot(rates, means, marker=plotting.marker(i), linestyle=plotting.LINESTYLES[i], color=plotting.color(i), label=name)
        stds = [row.get(f"{key}_std") for row in result.rates]
        if any(s is not None for s in stds):
            band = np.array([s or 0.0 for s in stds])
            right.fill_between(rates, means - band, means + band, color=plotting.color(i), alpha=0.2)
    right.set_xlabel("missing rate (probability of dropping each sample's modality)")
    right.set_ylabel(f"{result.split} score")
    right.set_ylim(0, 1.12)
    right.set_yticks(np.linspace(0, 1, 6))
    right.set_xticks(rates)
    right.set_title("(b) Random per-sample dropping" + (f" (±1 std over {result.repeats} seeds)" if result.repeats > 1 else ""))
    right.grid(alpha=0.3)
    right.legend(loc="upper center", ncol=len(shown), fontsize=8)
    fig.suptitle(f"Missing-modality robustness: {result.run}")
    return plotting.save_png(fig, path)


def plot_models(by_subset: Table, by_rate: Table, title: str, path: Path) -> Path:
    """Several models on one dataset (benchmark): (a) the table's metric per subset of present modalities,
    (b) against the random missing rate; bars / bands are ±1 sample std over seeds."""
    fig, (left, right) = plotting.new_figure(13, 4.8, 1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    subsets = list(by_subset.columns)
    x = np.arange(len(subsets))
    width = 0.8 / max(len(by_subset.rows), 1)
    for i, row in enumerate(by_subset.rows):
        means = [row.cells[k].mean if k in row.cells else np.nan for k in subsets]
        stds = [row.cells[k].std if k in row.cells and row.cells[k].n > 1 else 0.0 for k in subsets]
        left.bar(x + (i - (len(by_subset.rows) - 1) / 2) * width, means, width, yerr=stds, capsize=2, color=plotting.color(i),
                 hatch=plotting.HATCHES[i % len(plotting.HATCHES)], edgecolor="white", linewidth=0.5, label=row.label)  # fmt: skip
    long = max(map(len, subsets)) > 6
    left.set_xticks(x, subsets, rotation=30 if long else 0, ha="right" if long else "center")
    left.set_xlabel("modalities present")
    metric = by_subset.title.split(" with ")[0]
    left.set_ylabel(f"test {metric}")
    left.set_title("(a) Every subset of modalities")
    rates = [float(k) for k in by_rate.columns]
    for i, row in enumerate(by_rate.rows):
        means = np.array([row.cells[k].mean if k in row.cells else np.nan for k in by_rate.columns])
        stds = np.array([row.cells[k].std if k in row.cells and row.cells[k].n > 1 else 0.0 for k in by_rate.columns])
        right.plot(rates, means, color=plotting.color(i), marker=plotting.marker(i), linestyle=plotting.LINESTYLES[i % len(plotting.LINESTYLES)], label=row.label)
        right.fill_between(rates, means - stds, means + stds, color=plotting.color(i), alpha=0.15)
    right.set_xticks(rates)
    right.set_xlabel("missing rate (probability of dropping each sample's modality)")
    right.set_ylabel(f"test {metric}")
    right.set_title("(b) Random per-sample dropping")
    for ax in (left, right):
        ax.set_ylim(0, 1.12)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncol=min(len(by_rate.rows) or 1, 4))
    fig.suptitle(f"{title} (±1 std over seeds)")
    return plotting.save_png(fig, path)


def write(result: RobustnessResult, out: Path) -> list[Path]:
    """robustness.json (everything), subsets.csv, rates.csv, robustness.md and, with matplotlib, robustness.png."""
    written = [out / name for name in TABLE_FILES]
    check_output(out)
    make_output_dir(out)
    write_json(written[0], asdict(result) | {"settings": result.settings()})
    write_text(written[1], _csv(result.subsets))
    write_text(written[2], _csv(result.rates))
    write_text(written[3], to_markdown(result))
    if plotting.has_matplotlib():
        written.append(plot(result, out / PLOT_FILE))
    return written


def check_output(out: Path) -> None:
    """Refuse `out` when it holds a user's file named like one of the outputs (an earlier matrix is replaced)."""
    refuse_foreign_outputs(out, (*TABLE_FILES, PLOT_FILE), load(out) is not None, "missing-modality matrix")


def load(out: Path) -> dict[str, Any] | None:
    """A previously written robustness.json, or None (also when the file is not one)."""
    path = out / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "settings" in data else None
