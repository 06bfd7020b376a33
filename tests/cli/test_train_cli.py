"""`mmer train`: how the flags reach the resolved config, and what `--resume` refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmer.cli import main
from tests.cli.conftest import TRAIN, FitRecorder


def test_flags_reach_the_config_and_win_over_set(tmp_path, monkeypatch):
    fits = FitRecorder(monkeypatch)
    args = [*TRAIN, "--set", "train.seed=3", "--set", "train.epochs=9", "--seed", "7", "--epochs", "2", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    (cfg, out, kwargs), = fits.calls
    assert cfg.train.seed == 7 and cfg.train.epochs == 2  # the flags beat --set
    assert cfg.data.batch_size == 16 and cfg.train.lr == 3e-3  # --set keys the flags do not touch stay
    assert out == tmp_path / "r" and kwargs["quiet"] is True and kwargs["fast_dev_run"] is False


def test_root_is_saved_as_an_absolute_path(tmp_path, monkeypatch):
    """The run's config keeps the data folder; a relative one would break `evaluate`/`predict` from another cwd."""
    fits = FitRecorder(monkeypatch)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--root", "data", "--out", str(tmp_path / "r")]) == 0
    assert fits.calls[0][0].data.root == str(tmp_path / "data") and os.path.isabs(fits.calls[0][0].data.root)


def test_model_and_dataset_are_required_without_resume(tmp_path, capsys, monkeypatch):
    fits = FitRecorder(monkeypatch)
    assert main(["train", "--model", "baseline", "--out", str(tmp_path / "r")]) == 2
    assert "--model and --dataset are required (unless --resume)" in capsys.readouterr().err
    assert fits.calls == []


@pytest.mark.parametrize(
    "extra",
    [["--epochs", "3"], ["--seed", "1"], ["--set", "train.lr=1"], ["--precision", "bf16"], ["--root", "x"], ["--devices", "2"], ["--device", "cpu"], ["--fast-dev-run"]],
)
def test_resume_refuses_flags_that_would_change_the_saved_config(toy_run, capsys, monkeypatch, extra):
    fits = FitRecorder(monkeypatch)
    assert main(["train", "--out", str(toy_run), "--resume", *extra]) == 2
    assert "--resume continues a run with its saved config" in capsys.readouterr().err
    assert fits.calls == []


def test_resume_of_a_folder_that_does_not_exist_says_so(tmp_path, capsys, monkeypatch):
    fits = FitRecorder(monkeypatch)
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert f"--resume: {tmp_path / 'nothing'} does not exist, so there is no run to continue" in capsys.readouterr().err
    assert fits.calls == [] and not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(("extra", "message"), [(["--model", "br"], "is a run of 'baseline', not 'br'"), (["--dataset", "synth-party"], "is a run of 'engine-toy', not 'synth-party'")])
def test_resume_refuses_another_model_or_dataset(toy_run, capsys, monkeypatch, extra, message):
    fits = FitRecorder(monkeypatch)
    assert main(["train", "--out", str(toy_run), "--resume", *extra]) == 2
    err = capsys.readouterr().err
    assert f"--resume: {toy_run} {message}" in err and fits.calls == []


def test_resume_of_a_complete_run_prints_its_metrics_and_trains_nothing(toy_run, capsys, monkeypatch):
    fits = FitRecorder(monkeypatch)
    before = {p.name: p.stat().st_mtime_ns for p in Path(toy_run).iterdir()}
    assert main(["train", "--out", str(toy_run), "--resume", "--model", "baseline", "--dataset", "engine-toy"]) == 0
    out = capsys.readouterr().out
    assert "is already complete" in out and "| test |" in out and fits.calls == []
    assert {p.name: p.stat().st_mtime_ns for p in Path(toy_run).iterdir()} == before
