import csv
import json

import numpy as np
import pytest

from mmer.cli import main
from mmer.errors import DataError
from mmer.featurize.files import read_text_features, write_npz

ROWS = [("a1", "Hello there, friend!"), ("b2", "I’m not sure…"), ("c3", "")]


@pytest.fixture()
def transcripts(tmp_path):
    path = tmp_path / "talk.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip", "text"])
        writer.writerows(ROWS)
    return path


def featurize(csv_path, out, *extra):
    return main(["featurize", "text", "--input", str(csv_path), "--column", "text", "--out", str(out), *extra])


@pytest.mark.parametrize("encoder, shape", [("glove-50", (3, 60, 50)), ("minilm", (3, 1, 384))])
def test_writes_ids_features_masks_and_meta_and_is_byte_identical(transcripts, tmp_path, encoder, shape):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    assert featurize(transcripts, first, "--encoder", encoder, "--id-column", "clip") == 0
    assert featurize(transcripts, second, "--encoder", encoder, "--id-column", "clip") == 0
    ids, feats, mask, meta = read_text_features(first)
    assert ids == ["a1", "b2", "c3"] and feats.shape == shape and mask.shape == shape[:2]
    assert mask[:2].any(axis=1).all() and not mask[2].any()
    assert meta["encoder"] == encoder and meta["input"] == "talk.csv" and meta["package_version"]
    assert first.read_bytes() == second.read_bytes()


def test_row_numbers_are_the_ids_without_an_id_column(transcripts, tmp_path):
    assert featurize(transcripts, tmp_path / "o.npz", "--encoder", "glove-50", "--pooling", "mean") == 0
    ids, feats, mask, meta = read_text_features(tmp_path / "o.npz")
    assert ids == ["0", "1", "2"] and feats.shape == (3, 1, 50) and meta["pooling"] == "mean"


def test_refuses_to_overwrite_unless_asked(transcripts, tmp_path, capsys):
    out = tmp_path / "o.npz"
    out.write_bytes(b"precious")
    assert featurize(transcripts, out, "--encoder", "glove-50") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert featurize(transcripts, out, "--encoder", "glove-50", "--overwrite") == 0
    assert read_text_features(out)[1].shape == (3, 60, 50)


def test_bad_input_is_one_clear_error(transcripts, tmp_path, capsys):
    assert featurize(transcripts, tmp_path / "o.npz", "--encoder", "glove-50", "--id-column", "Clip") == 2
    assert "no column 'Clip' (--id-column) (did you mean 'clip'?)" in capsys.readouterr().err
    assert featurize(transcripts, tmp_path / "o.npz", "--encoder", "minilm", "--pooling", "words") == 2
    assert "pooling 'words' is not available for encoder 'minilm'; valid: mean, cls, tokens" in capsys.readouterr().err
    dup = tmp_path / "dup.csv"
    dup.write_text("clip,text\nx,hi\nx,ho\n")
    assert featurize(dup, tmp_path / "o.npz", "--encoder", "glove-50", "--id-column", "clip") == 2
    assert "line 3 repeats the id 'x'" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_reading_refuses_pickled_or_malformed_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, ids=np.array([{"x": 1}], dtype=object), **{"feat.text": np.zeros((1, 1, 2), np.float32)})
    with pytest.raises(DataError, match="unsafe"):
        read_text_features(bad)
    write_npz(tmp_path / "m.npz", {"ids": np.array(["a"]), "feat.text": np.zeros((1, 2, 3), np.float32),
                                   "mask.text": np.zeros((1, 3), bool), "meta": np.array(json.dumps({}))}, overwrite=False)
    with pytest.raises(DataError, match="'mask.text' bool"):
        read_text_features(tmp_path / "m.npz")
