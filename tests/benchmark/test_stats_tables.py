"""Statistics over seeds and the rendered tables (Markdown, LaTeX, CSV)."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from mmer.benchmark.stats import Summary, paired_difference, summarize
from mmer.benchmark.tables import LAYOUTS, Row, Table, layout_for, tables_csv, to_latex, to_markdown
from mmer.data.dataset import DataSpec, ModalitySpec


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
