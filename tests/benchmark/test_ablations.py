"""Ablation files: parsing, clear errors, which model a file ablates, and how rows become runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmer.benchmark import grid
from mmer.benchmark.ablations import load_ablation_file, slugify
from mmer.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rows_keep_file_order_and_empty_rows_are_the_plain_model(tmp_path):
    path = write(tmp_path, "baseline_table9.yaml", '"(1) w/o encoder": [model.num_layers=0]\n"(2) small": [model.d_model=16, train.lr=1e-3]\n"(3) full": []\n')
    table = load_ablation_file(str(path))
    assert table.name == "baseline_table9" and table.model == "baseline"
    assert [(r.name, r.slug, r.overrides) for r in table.rows] == [
        ("(1) w/o encoder", "1-w-o-encoder", ("model.num_layers=0",)),
        ("(2) small", "2-small", ("model.d_model=16", "train.lr=1e-3")),
        ("(3) full", "3-full", ()),
    ]
    specs = grid.build_specs(["baseline", "br"], ["engine-toy"], [1], ["data.batch_size=16"], [table])
    assert [s.entry for s in specs] == ["baseline", "baseline__1-w-o-encoder", "baseline__2-small", "br"]
    assert specs[2].overrides == ("data.batch_size=16", "model.d_model=16", "train.lr=1e-3")
    assert specs[1].run_dir(tmp_path) == tmp_path / "runs" / "engine-toy" / "baseline__1-w-o-encoder" / "seed1"


def test_a_file_not_named_after_a_model_applies_to_every_model(tmp_path):
    table = load_ablation_file(str(write(tmp_path, "my_lr.yaml", "low lr: [train.lr=1e-5]\n")))
    assert table.model is None
    assert [s.entry for s in grid.build_specs(["baseline", "br"], ["engine-toy"], [1], [], [table])] == ["baseline", "baseline__low-lr", "br", "br__low-lr"]


def test_ablating_a_model_outside_the_grid_is_an_error(tmp_path):
    table = load_ablation_file(str(write(tmp_path, "baseline_x.yaml", "a: [model.d_model=8]\n")))
    with pytest.raises(ConfigError, match="is for model 'baseline', which is not in --models"):
        grid.build_specs(["br"], ["engine-toy"], [1], [], [table])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must contain a mapping"),
        ("", "has no rows"),
        ("row: model.d_model=8\n", "expected a list of 'key=value' strings"),
        ("row: [model.d_model]\n", "expects key=value"),
        ("A b: []\na-b: [train.lr=1]\n", "equals that of row 'A b'"),
        ("row: [1, 2]\n", "expected a list"),
    ],
)
def test_malformed_files_name_the_file_row_and_problem(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_ablation_file(str(path))
    assert str(path) in str(info.value)


def test_unknown_key_fails_at_planning_naming_file_row_and_key(tmp_path):
    path = write(tmp_path, "baseline_t.yaml", '"(2) no encoder": [model.n_layers=0]\n')
    specs = grid.build_specs(["baseline"], ["engine-toy"], [1], [], [load_ablation_file(str(path))])
    with pytest.raises(ConfigError) as info:
        grid.plan(specs, tmp_path / "out")
    text = str(info.value)
    assert str(path) in text and "'(2) no encoder'" in text and "unknown key 'model.n_layers'" in text and "num_layers" in text
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was created


def test_unknown_file_lists_what_ships():
    with pytest.raises(ConfigError, match="neither an existing file nor a shipped ablation"):
        load_ablation_file("no_such_table")


def test_slugify():
    assert slugify("(8) w/o X_beta + X_gamma") == "8-w-o-x-beta-x-gamma"
