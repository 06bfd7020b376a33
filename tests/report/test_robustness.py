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


@pytest.mark.parametrize(("name", "content"), [("robustness.md", "my notes\n"), ("robustness.json", '{"my": "results"}\n')])
def test_matrix_never_replaces_a_users_file_of_the_same_name(matrix, tmp_path, capsys, name, content):
    """A user's file named like an output (also a JSON dict that is not a matrix) is not taken for an earlier run."""
    run, _ = matrix
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / name).write_text(content)
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(mine)]) == 2
    assert f"{name} exist(s) and are not an earlier missing-modality matrix" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == [name] and (mine / name).read_text() == content
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(tmp_path / "m2")]) == 0
    assert main(["evaluate", "--run", str(run), "--missing-matrix", "--out", str(tmp_path / "m2")]) == 0  # its own output


# ----------------------------------------------------------------------------------------------- round 5


def test_each_batch_gets_its_own_draw_seeded_by_its_first_sample():
    """Batches are seeded from (seed, index of the first sample): identical batches at other positions of the split
    must not lose the very same cells, and the same position and seed must always lose the same ones."""
    import torch

    from mmer.report.robustness import missing_transform
    from tests.engine.toy_data import make_split

    batch = make_split(64, 0).batch(torch.arange(64))
    at = lambda start, seed: missing_transform(rate=0.5, seed=seed)(batch.replace(index=torch.arange(start, start + 64))).present()  # noqa: E731
    assert torch.equal(at(0, 0), at(0, 0))
    assert not torch.equal(at(0, 0), at(64, 0))
    assert not torch.equal(at(0, 0), at(0, 1))
    assert missing_transform() is None and missing_transform(rate=0.0, seed=5) is None


def test_rate_zero_is_evaluated_once_and_has_no_std(matrix):
    _, data = matrix
    first, second = data["rates"][0], data["rates"][1]
    assert first["rate"] == 0.0 and all(first[f"{k}_std"] is None for k in METRIC_KEYS)
    assert all(second[f"{k}_std"] is not None for k in METRIC_KEYS)
    assert data["settings"] == {"split": "test", "seed": 0, "repeats": 2, "rates": list(RATES)}


def test_csv_and_markdown_carry_the_json_values(matrix):
    run, data = matrix
    out = run / "robustness"
    rates = list(csv.DictReader((out / "rates.csv").open()))
    subsets = list(csv.DictReader((out / "subsets.csv").open()))
    assert [r["present"] for r in subsets] == [r["present"] for r in data["subsets"]]
    for rows, saved in ((rates, data["rates"]), (subsets, data["subsets"])):
        for row, value in zip(rows, saved):
            assert float(row["micro_f1"]) == pytest.approx(value["micro_f1"], abs=1e-6)
    assert rates[0]["micro_f1_std"] == "" and float(rates[3]["micro_f1_std"]) == pytest.approx(data["rates"][3]["micro_f1_std"], abs=1e-6)
    md = (out / "robustness.md").read_text()
    assert "mean over 2 seeds (0..1), ± sample std (ddof=1)" in md
    r5 = data["rates"][5]
    assert f"| 0.5 | {r5['effective_missing']:.3f} | {r5['acc']:.4f} ± {r5['acc_std']:.4f} |" in md
