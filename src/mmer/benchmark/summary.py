"""From results.csv rows to the benchmark's tables: the main table per dataset, one table per ablation file
and dataset, paired comparisons, and (with --missing-matrix) the robustness tables.

Every table is computed over the seeds that finished; a row's n says how many.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmer.benchmark.ablations import AblationTable
from mmer.benchmark.stats import PairedDifference, Summary, paired_difference, summarize
from mmer.benchmark.tables import HEADERS, STD_NOTE, Row, Table
from mmer.metrics import METRIC_KEYS

Results = list[dict[str, Any]]


def _by_entry(results: Results, dataset: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        if row["dataset"] == dataset:
            grouped[row["entry"]].append(row)
    return grouped


def _cells(runs: list[dict[str, Any]]) -> dict[str, Summary]:
    return {k: summarize([float(r[k]) for r in runs]) for k in METRIC_KEYS}


def main_table(results: Results, dataset: str, models: Sequence[str], columns: tuple[str, ...], references: dict[str, dict[str, float]]) -> Table:
    grouped = _by_entry(results, dataset)
    table = Table(
        f"Test results on {dataset}",
        f"Test metrics, {STD_NOTE}; best model mean in bold."
        + (" Rows in italics are the dataset's reference points, not models." if references else ""),
        columns,
    )
    for model in models:
        if grouped.get(model):
            table.rows.append(Row(model, _cells(grouped[model])))
    for name, values in references.items():
        table.rows.append(Row(f"{name} (reference)", {k: Summary(v, math.nan, 1) for k, v in values.items()}, reference=True))
    return table


def ablation_table(results: Results, dataset: str, ablation: AblationTable, models: Sequence[str], columns: tuple[str, ...]) -> Table:
    grouped = _by_entry(results, dataset)
    targets = [ablation.model] if ablation.model else list(models)
    table = Table(
        f"Ablation {ablation.name} on {dataset}",
        f"Test metrics, {STD_NOTE}; best mean in bold. Overrides per row: {ablation.path}.",
        columns,
        row_header="Variant",
    )
    for model in targets:
        for row in ablation.rows:
            entry = f"{model}__{row.slug}" if row.overrides else model
            label = row.name if len(targets) == 1 else f"{model}: {row.name}"
            if grouped.get(entry):
                table.rows.append(Row(label, _cells(grouped[entry])))
    return table


@dataclass(frozen=True)
class Comparison:
    dataset: str
    a: str
    b: str
    metric: str
    seeds: tuple[int, ...]
    result: PairedDifference


def compare(results: Results, dataset: str, a: str, b: str, metrics: Sequence[str] = METRIC_KEYS) -> list[Comparison]:
    """Seed-matched comparison of entries a and b on one dataset (empty when they share no seed)."""
    grouped = _by_entry(results, dataset)
    runs_a = {int(r["seed"]): r for r in grouped.get(a, [])}
    runs_b = {int(r["seed"]): r for r in grouped.get(b, [])}
    seeds = tuple(sorted(runs_a.keys() & runs_b.keys()))
    if not seeds:
        return []
    return [
        Comparison(dataset, a, b, m, seeds, paired_difference([float(runs_a[s][m]) for s in seeds], [float(runs_b[s][m]) for s in seeds]))
        for m in metrics
    ]


def comparison_markdown(comparisons: list[Comparison], shown: Sequence[str]) -> str:
    first = comparisons[0]
    r0 = first.result
    lines = [
        f"**Paired comparison on {first.dataset}: {first.a} − {first.b}** over {r0.n} shared seed(s) "
        f"({', '.join(map(str, first.seeds))}). Difference = mean over seeds of ({first.a} − {first.b}); "
        f"{r0.confidence:.0%} CI = mean ± t({0.5 + r0.confidence / 2:g}, n−1) · sd(ddof=1) / √n; p = two-sided paired t-test.",
        "",
        f"| metric | {first.a} | {first.b} | difference | {r0.confidence:.0%} CI | p |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for c in comparisons:
        if c.metric not in shown:
            continue
        r = c.result
        ci = "n/a (needs ≥ 2 seeds)" if math.isnan(r.ci_low) else f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
        p = "–" if math.isnan(r.p_value) else f"{r.p_value:.3g}"
        lines.append(f"| {HEADERS[c.metric]} | {r.mean_a:.4f} | {r.mean_b:.4f} | {r.mean_diff:+.4f} | {ci} | {p} |")
    return "\n".join(lines)


def comparisons_csv(comparisons: list[Comparison]) -> str:
    buf = io.StringIO()
    columns = ["dataset", "a", "b", "metric", "n", "seeds", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_value", "confidence"]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for c in comparisons:
        r = c.result
        writer.writerow([c.dataset, c.a, c.b, c.metric, r.n, " ".join(map(str, c.seeds)), *(_num(v) for v in (r.mean_a, r.mean_b, r.mean_diff, r.ci_low, r.ci_high, r.p_value)), r.confidence])
    return buf.getvalue()


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


# ------------------------------------------------------------------------------------- robustness tables


def robustness_tables(per_run: dict[tuple[str, str, int], dict[str, Any]], dataset: str, models: Sequence[str], metric: str = "micro_f1") -> list[Table]:
    """Two tables (subsets of present modalities; random missing rates) of `metric`, mean ± std over seeds.
    `per_run` maps (dataset, entry, seed) to a run's robustness.json."""
    subsets: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    subset_order: list[str] = []
    for (ds, entry, _seed), data in sorted(per_run.items()):
        if ds != dataset:
            continue
        for row in data["subsets"]:
            subsets[entry][row["present"]].append(row[metric])
            if row["present"] not in subset_order:
                subset_order.append(row["present"])
        for row in data["rates"]:
            rates[entry][f"{row['rate']:.1f}"].append(row[metric])
    rate_keys = sorted({k for v in rates.values() for k in v}, key=float)
    name = HEADERS.get(metric, metric)
    by_subset = Table(
        f"{name} with only some modalities present, {dataset}",
        f"Test {name} when every modality outside the column's set is dropped (mask False, features zero); {STD_NOTE}; best in bold.",
        tuple(subset_order),
        headers={k: k for k in subset_order},
    )
    by_rate = Table(
        f"{name} under random per-sample modality dropping, {dataset}",
        f"Test {name} when each (sample, modality) is dropped with the column's probability, keeping at least one modality per sample; {STD_NOTE}; best in bold.",
        tuple(rate_keys),
        headers={k: f"r={k}" for k in rate_keys},
    )
    for model in models:
        if model in subsets:
            by_subset.rows.append(Row(model, {k: summarize(v) for k, v in subsets[model].items()}))
        if model in rates:
            by_rate.rows.append(Row(model, {k: summarize(v) for k, v in rates[model].items()}))
    return [t for t in (by_subset, by_rate) if t.rows]
