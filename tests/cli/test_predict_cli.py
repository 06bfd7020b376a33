"""`mmer predict`: the CSV it writes, and when it refuses or replaces --out."""

from __future__ import annotations

import csv

from mmer.cli import main


def test_predict_writes_one_row_per_sample_of_the_split(toy_run, tmp_path, capsys):
    out = tmp_path / "valid.csv"
    assert main(["predict", "--run", str(toy_run), "--split", "valid", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [f"2-{i}" for i in range(37)]  # engine-toy's valid split, in order
    assert set(rows[0]) == {"id", "p_a", "p_b", "p_c", "predicted", "gold"}
    assert f"wrote 37 predictions of engine-toy (test data), split valid, to {out}" in capsys.readouterr().out


def test_overwrite_replaces_an_existing_file(toy_run, tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("mine\n")
    assert main(["predict", "--run", str(toy_run), "--out", str(out), "--overwrite"]) == 0
    assert out.read_text() == (toy_run / "predictions_test.csv").read_text()


def test_a_directory_as_out_is_refused_naming_it(toy_run, tmp_path, capsys):
    folder = tmp_path / "preds"
    folder.mkdir()
    for extra in ([], ["--overwrite"]):
        assert main(["predict", "--run", str(toy_run), "--out", str(folder), *extra]) == 2
        assert f"--out {folder} is a directory; give the CSV file to write" in capsys.readouterr().err
    assert list(folder.iterdir()) == []
