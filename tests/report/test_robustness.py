"""Missing-modality matrix of a trained run (`mmer evaluate --missing-matrix`)."""

from __future__ import annotations

import csv
import json

import pytest

from mmer.cli import main
from mmer.engine import rundir
from mmer.metrics import METRIC_KEYS
from mmer.report.robustness import RATES, modality_subsets

TRAIN = ["train", "--model", "baseline", "--dataset", "engine-toy", "--quiet", "--set", "data.batch_size=16", "--set", "train.lr=3e-3"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "r"
    assert main([*TRAIN, "--epochs", "3", "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--missing-repeats", "2", "--json"]) == 0
    return run, json.loads((run / "robustness" / "robustness.json").read_text())


def test_subsets_cover_every_nonempty_set_and_the_full_set_reproduces_metrics_json(matrix):
    run, data = matrix
    assert modality_subsets(["t", "a", "v"]) == [("t", "a", "v"), ("t", "a"), ("t", "v"), ("a", "v"), ("t",), ("a",), ("v",)]
    assert [r["present"] for r in data["subsets"]] == ["text+audio", "text", "audio"]
    test = json.loads((run / rundir.METRICS).read_text())["test"]
    assert all(data["subsets"][0][k] == test[k] for k in METRIC_KEYS)
    assert all(data["subsets"][i]["micro_f1"] < test["micro_f1"] for i in (1, 2))  # one modality alone is worse here


def test_rates_are_seeded_monotone_in_effect_and_reproducible_by_evaluate(matrix, capsys):
    run, data = matrix
    rates = data["rates"]
    assert [r["rate"] for r in rates] == list(RATES)
    test = json.loads((run / rundir.METRICS).read_text())["test"]
    assert rates[0]["micro_f1"] == test["micro_f1"] and rates[0]["effective_missing"] == 0
    effective = [r["effective_missing"] for r in rates]
    assert effective == sorted(effective) and 0.3 < effective[-1] < 0.5  # two modalities, at least one kept
    assert rates[-1]["micro_f1"] < rates[0]["micro_f1"]
    assert rates[5]["micro_f1_std"] is not None  # two repeats -> a std
    capsys.readouterr()
    # the matrix row is the mean of exactly those two `mmer evaluate` calls
    values = []
    for seed in (0, 1):
        assert main(["evaluate", "--run", str(run), "--missing-rate", "0.5", "--missing-seed", str(seed), "--json"]) == 0
        values.append(json.loads(capsys.readouterr().out)["micro_f1"])
    assert rates[5]["micro_f1"] == pytest.approx(sum(values) / 2, abs=1e-12)


def test_outputs_tables_and_plot(matrix):
    run, _ = matrix
    out = run / "robustness"
    for name in ("robustness.json", "subsets.csv", "rates.csv", "robustness.md", "robustness.png"):
        assert (out / name).is_file(), name
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "rates.csv").open()))
    assert len(rows) == 10 and {"rate", "effective_missing", "micro_f1", "micro_f1_std"} <= set(rows[0])
    md = (out / "robustness.md").read_text()
    assert "| text+audio |" in md and "| 0.9 |" in md


def test_matrix_to_another_folder_and_bad_combinations(matrix, tmp_path, capsys):
    run, _ = matrix
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "subsets.csv").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--drop-modalities", "t"]) == 2
    assert "--missing-matrix evaluates every subset" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "belong to --missing-matrix" in capsys.readouterr().err


def test_matrix_never_replaces_a_users_file_of_the_same_name(matrix, tmp_path, capsys):
    run, _ = matrix
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "robustness.md").write_text("my notes\n")
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(mine)]) == 2
    assert "robustness.md exist(s) and are not an earlier missing-modality matrix" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["robustness.md"] and (mine / "robustness.md").read_text() == "my notes\n"
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(tmp_path / "m2")]) == 0
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(tmp_path / "m2")]) == 0  # its own output
