"""Statistics over seeds and the rendered tables (Markdown, LaTeX, CSV)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest

from mmer.benchmark.ablations import AblationRow, AblationTable
from mmer.benchmark.stats import Summary, paired_difference, summarize
from mmer.benchmark.summary import ablation_table, compare, robustness_tables
from mmer.benchmark.tables import LAYOUTS, Row, Table, layout_for, tables_csv, to_latex, to_markdown
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.metrics import METRIC_KEYS


def test_summarize_uses_the_sample_std():
    values = [0.51, 0.55, 0.49, 0.60]
    s = summarize(values)
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert s.std != pytest.approx(np.std(values))  # not the population std
    one = summarize([0.5])
    assert one.n == 1 and math.isnan(one.std)


def test_paired_difference_matches_a_hand_computation():
    # d = [0.10, 0.05, 0.10]: mean 0.083333, sd 0.028868, se 0.016667, t(0.975, df=2) = 4.302653 (t table)
    r = paired_difference([0.50, 0.60, 0.70], [0.40, 0.55, 0.60])
    half = 4.302653 * 0.0288675 / math.sqrt(3)
    assert r.n == 3 and r.mean_diff == pytest.approx(0.0833333, abs=1e-6)
    assert r.ci_low == pytest.approx(0.0833333 - half, abs=1e-5)
    assert r.ci_high == pytest.approx(0.0833333 + half, abs=1e-5)
    # paired t statistic 0.083333 / 0.016667 = 5.0 with 2 df -> two-sided p = 0.03775
    assert r.p_value == pytest.approx(0.03775, abs=1e-4)
    assert (r.mean_a, r.mean_b) == (pytest.approx(0.6), pytest.approx(0.5166667))


def test_paired_difference_with_one_seed_has_no_interval():
    r = paired_difference([0.6], [0.5])
    assert r.mean_diff == pytest.approx(0.1) and math.isnan(r.ci_low) and math.isnan(r.p_value)
    with pytest.raises(ValueError):
        paired_difference([0.1, 0.2], [0.1])


def _table() -> Table:
    def cells(acc: float, std: float, n: int = 3, hl: float = 0.2) -> dict[str, Summary]:
        return {"acc": Summary(acc, std, n), "micro_f1": Summary(acc + 0.1, std, n), "hamming_loss": Summary(hl, std, n)}

    return Table(
        "Test results on toy_set",
        "caption: mean ± std (ddof=1)",
        ("acc", "micro_f1", "hamming_loss"),
        [
            Row("model_a", cells(0.5001, 0.01, hl=0.3)),
            Row("model_b", cells(0.4999, 0.02, hl=0.1)),  # ties model_a at 3 decimals on acc and micro_f1
            Row("model_c", cells(0.40, math.nan, n=1, hl=0.05)),
            Row("chance", {"acc": Summary(0.9, math.nan, 1)}, reference=True),  # never bold, even if higher
        ],
    )


def test_markdown_bolds_the_best_per_column_with_ties_and_lower_is_better():
    md = to_markdown(_table())
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "**0.500 ± 0.010**" in lines["model_a"] and "**0.500 ± 0.020**" in lines["model_b"]  # tie at 3 decimals
    assert "**0.050**" in lines["model_c"]  # hamming loss: lower is better
    assert "| model_c | 1 | 0.400 |" in lines["model_c"]  # n=1: the value, no ± and n column 1
    assert "**" not in lines["*chance*"] and "| – |" in lines["*chance*"]


def test_latex_is_booktabs_escaped_and_bold():
    tex = to_latex(_table(), "tab:x")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:x}" in tex
    assert r"model\_a" in tex and r"toy\_set" in tex and "±" not in tex
    assert r"$\mathbf{0.500 \pm 0.010}$" in tex and r"$\mathbf{0.050}$" in tex
    assert r"\textit{chance}" in tex


def test_csv_has_every_metric_and_empty_std_for_one_seed():
    rows = list(csv.DictReader(io.StringIO(tables_csv([_table()]))))
    assert [r["row"] for r in rows] == ["model_a", "model_b", "model_c", "chance"]
    assert rows[0]["acc_std"] == "0.010000" and rows[2]["acc_std"] == "" and rows[2]["n"] == "1"
    assert "weighted_f1_mean" in rows[0] and rows[0]["weighted_f1_mean"] == ""


def test_layout_follows_the_dataset_protocol():
    mods = (ModalitySpec("text", 4, 5),)
    memor_like = DataSpec("p", ("a",), mods, multi_party=True, max_persons=5)
    dyadic = DataSpec("d", ("a",), mods, multi_party=True, max_persons=2)
    assert layout_for(memor_like) == LAYOUTS["memor"] == ("micro_f1", "macro_f1", "weighted_f1")
    assert layout_for(dyadic) == layout_for(None) == ("acc", "precision", "recall", "micro_f1")
    assert layout_for(memor_like, "all")[0] == "acc"


def _result(entry: str, seed: int, value: float) -> dict:
    return {"dataset": "d", "entry": entry, "seed": str(seed), **{k: value for k in METRIC_KEYS}}


def test_comparison_pairs_only_the_seeds_both_entries_finished():
    """A seed where only one model finished is left out of the paired comparison, not an error or a wrong pair."""
    results = [_result("a", 1, 0.9), _result("a", 2, 0.5), _result("a", 3, 0.7), _result("b", 3, 0.6), _result("b", 2, 0.3)]
    (c,) = compare(results, "d", "a", "b", metrics=("micro_f1",))
    assert c.seeds == (2, 3) and c.result.n == 2
    assert c.result.mean_diff == pytest.approx(0.15) and c.result.mean_a == pytest.approx(0.6)


def test_ablation_table_keeps_the_rows_in_file_order():
    """docs/benchmark.md: row order is table order (the papers' numbering), whatever the names sort to."""
    rows = (AblationRow("(2) w/o B", "2-w-o-b", ("x=0",)), AblationRow("(1) w/o A", "1-w-o-a", ("y=0",)), AblationRow("(3) full", "3-full", ()))
    results = [_result(entry, 1, 0.5) for entry in ("m", "m__1-w-o-a", "m__2-w-o-b")]
    table = ablation_table(results, "d", AblationTable("m_t", Path("m_t.yaml"), "m", rows), ["m"], ("micro_f1",))
    assert [r.label for r in table.rows] == ["(2) w/o B", "(1) w/o A", "(3) full"]


def test_robustness_tables_average_seeds_with_rates_in_increasing_order():
    """One cell per (model, subset or rate): mean ± sample std over seeds; rate columns run from 0 upwards."""
    def run(f1: float) -> dict:
        return {"subsets": [{"present": "text+audio", "micro_f1": f1}, {"present": "text", "micro_f1": f1 / 2}],
                "rates": [{"rate": r, "micro_f1": f1 - r / 10} for r in (0.5, 0.0, 0.9)]}

    per_run = {("d", "m", 1): run(0.6), ("d", "m", 2): run(0.8), ("other", "m", 1): run(0.1)}
    by_subset, by_rate = robustness_tables(per_run, "d", ["m"])
    assert by_subset.columns == ("text+audio", "text") and by_rate.columns == ("0.0", "0.5", "0.9")
    cell = by_subset.rows[0].cells["text+audio"]
    assert (cell.n, cell.mean, cell.std) == (2, pytest.approx(0.7), pytest.approx(np.std([0.6, 0.8], ddof=1)))
