"""Run-directory files: history.csv keeps every column any epoch logged, and a run counts as complete only with
both its metrics.json and best.pt."""

from __future__ import annotations

import csv

import pytest

from mmer.engine import rundir
from mmer.errors import DataError


def test_history_has_the_columns_of_every_row_in_first_seen_order(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 0.5, "valid_micro_f1": 0.1},
        {"epoch": 2, "train_loss": 0.4, "train_loss_app": 0.01, "valid_micro_f1": 0.2},  # a loss that starts late
    ]
    rundir.write_history(tmp_path, rows)
    with (tmp_path / rundir.HISTORY).open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["epoch", "train_loss", "valid_micro_f1", "train_loss_app"]
        written = list(reader)
    assert written[0]["train_loss_app"] == "" and written[1]["train_loss_app"] == "0.01"
    assert rundir.read_history(tmp_path) == written


def test_read_history_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"history\.csv: missing"):
        rundir.read_history(tmp_path)
    (tmp_path / rundir.HISTORY).write_text("epoch,train_loss\n")
    with pytest.raises(DataError, match=r"history\.csv: no epoch rows"):
        rundir.read_history(tmp_path)


@pytest.mark.parametrize("files", [(), (rundir.METRICS,), (rundir.BEST,)])
def test_a_run_without_metrics_or_best_checkpoint_is_not_complete(tmp_path, files):
    for name in files:
        (tmp_path / name).write_text("x")
    assert not rundir.is_complete(tmp_path)
    for name in (rundir.METRICS, rundir.BEST):
        (tmp_path / name).write_text("x")
    assert rundir.is_complete(tmp_path)
