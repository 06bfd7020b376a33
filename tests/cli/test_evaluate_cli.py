"""`mmer evaluate`: which modalities --drop-modalities means, and the flag combinations it refuses."""

from __future__ import annotations

import json

import pytest

from mmer.cli import main
from mmer.commands.evaluate import resolve_modalities
from mmer.errors import ConfigError


def test_modalities_by_full_name_or_unique_prefix():
    available = ("text", "audio", "visual")
    assert resolve_modalities("t, a", available) == ["text", "audio"]
    assert resolve_modalities("visual,text", available) == ["visual", "text"]
    assert resolve_modalities("", available) == []


def test_an_ambiguous_or_unknown_prefix_is_refused_not_guessed():
    with pytest.raises(ConfigError, match=r"unknown modality in --drop-modalities 'a'; valid: acoustic, audio, text"):
        resolve_modalities("a", ("text", "audio", "acoustic"))
    with pytest.raises(ConfigError, match=r"modality in --drop-modalities 'video'"):
        resolve_modalities("video", ("text", "audio"))
    # an exact name wins over being a prefix of another one
    assert resolve_modalities("audio", ("audio", "audio2")) == ["audio"]
    with pytest.raises(ConfigError, match=r"--drop-modalities names text twice \('text,t'\)"):
        resolve_modalities("text,t", ("text", "audio"))


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--out", "p.csv"], ["report", "--out", "figs"]])
def test_a_run_folder_that_does_not_exist_is_named_as_such(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    assert main([command[0], "--run", str(tmp_path / "gone"), *command[1:]]) == 2
    assert capsys.readouterr().err == f"mmer: error: {tmp_path / 'gone'}: no such run folder\n"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dropping_every_modality_is_refused(toy_run, capsys):
    assert main(["evaluate", "--run", str(toy_run), "--drop-modalities", "text,a"]) == 2
    assert "--drop-modalities removes every modality; keep at least one" in capsys.readouterr().err


@pytest.mark.parametrize("rate", ["1.0", "-0.1"])
def test_a_missing_rate_outside_0_1_is_refused(toy_run, capsys, rate):
    assert main(["evaluate", "--run", str(toy_run), "--missing-rate", rate]) == 2
    assert f"--missing-rate must be in [0, 1), got {float(rate)}" in capsys.readouterr().err


def test_matrix_only_flags_are_refused_without_the_matrix(toy_run, tmp_path, capsys):
    assert main(["evaluate", "--run", str(toy_run), "--missing-repeats", "3"]) == 2
    assert "--out and --missing-repeats belong to --missing-matrix" in capsys.readouterr().err


def test_matrix_needs_at_least_one_repeat_and_writes_nothing_otherwise(toy_run, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["evaluate", "--run", str(toy_run), "--missing-matrix", "--missing-repeats", "0", "--out", str(out)]) == 2
    assert "--missing-repeats must be >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_json_and_table_describe_the_dropped_evaluation(toy_run, capsys):
    assert main(["evaluate", "--run", str(toy_run), "--drop-modalities", "audio", "--missing-rate", "0.5", "--split", "valid"]) == 0
    assert "| valid without audio missing 50% |" in capsys.readouterr().out
    assert main(["evaluate", "--run", str(toy_run), "--split", "valid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((toy_run / "metrics.json").read_text())["valid"]
