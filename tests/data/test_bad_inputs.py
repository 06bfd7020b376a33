"""Bad data inputs are one error naming the file and the field: text that is not UTF-8, npz files with wrong types,
and options `mmer data check` does not take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmer import config as cfglib
from mmer.data.npz_format import read_npz_dir
from mmer.data.readers.meld import read_utterances
from mmer.data.readers.mosei_text import SEGMENTS_FILE, read_segments
from mmer.data.readers.music import read_music
from mmer.errors import ConfigError, DataError

LATIN1 = "id,text\n1,caf\xe9\n".encode("latin-1")  # a byte that is not UTF-8


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("music.csv", read_music),
        ("train_sent_emo.csv", read_utterances),
        (SEGMENTS_FILE, lambda path: read_segments(path.parent)),
    ],
)
def test_a_file_that_is_not_utf8_is_named(tmp_path, name, read):
    path = tmp_path / name
    path.write_bytes(LATIN1)
    with pytest.raises(DataError, match=rf"{name}: not UTF-8 text \(invalid continuation byte at byte \d+\)"):
        read(path)


@pytest.mark.parametrize(
    ("name", "text", "read", "message"),
    [
        ("music.csv", "happy,BH_1,Mean_Acc1\n2,0.1,0.2\n", read_music, r"line 2, label column 'happy' is 2, not 0 or 1"),
        (SEGMENTS_FILE, "video_id,end,happy,sad,anger,surprise,disgust,fear,text\nv1,1,0,0,0,0,0,3.5,hi\n",
         lambda path: read_segments(path.parent), r"line 2, column 'fear': emotion intensity 3.5 is outside 0..3"),
    ],
    ids=["music", "mosei-text"],
)
def test_a_label_value_out_of_range_is_named(tmp_path, name, text, read, message):
    """Label cells must be 0/1 (music) or an intensity in 0..3 (mosei-text); anything else is a data error, not a label."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=rf"{name}: {message}"):
        read(path)


def test_a_config_file_that_is_not_utf8_or_is_a_folder_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  epochs: \xff\n")
    with pytest.raises(ConfigError, match=r"c.yaml is not UTF-8 text"):
        cfglib.read_yaml(path, "config file")
    with pytest.raises(ConfigError, match=r"is a directory, not a YAML file"):
        cfglib.read_yaml(tmp_path, "config file")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (42, "must hold a JSON object, got int"),
        ({"format": "mmer-npz", "label_names": None, "modalities": ["text"]}, "field 'label_names' must be a non-empty list of names, got None"),
        ({"format": "mmer-npz", "label_names": ["a"], "modalities": "text"}, "field 'modalities' must be a non-empty list of names, got 'text'"),
        ({"format": "mmer-npz", "version": 2, "label_names": ["a"], "modalities": ["text"]}, "field 'format' is 'mmer-npz' v2, expected 'mmer-npz' v1"),
        ({"format": "npy", "version": 1, "label_names": ["a"], "modalities": ["text"]}, "field 'format' is 'npy' v1, expected 'mmer-npz' v1"),
    ],
)
def test_npz_meta_with_wrong_types_is_named(tmp_path: Path, meta, message):
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"meta.json: {message}"):
        read_npz_dir(tmp_path)


def _npz_dir(tmp_path: Path, **replace) -> Path:
    """A one-sample npz directory (format of `mmer data synth`), with arrays of test.npz replaced."""
    tmp_path.mkdir()
    (tmp_path / "meta.json").write_text(json.dumps({"format": "mmer-npz", "version": 1, "label_names": ["a"], "modalities": ["text"]}))
    arrays = {"labels": np.ones((1, 1), np.uint8), "ids": np.array(["x"]), "feat.text": np.zeros((1, 2, 3), np.float32), "mask.text": np.ones((1, 2), bool)}
    for split in ("train", "valid", "test"):
        np.savez(tmp_path / f"{split}.npz", **(arrays | replace if split == "test" else arrays))
    return tmp_path


def test_npz_arrays_of_the_wrong_kind_are_named(tmp_path):
    with pytest.raises(DataError, match=r"test.npz: array 'feat.text' has dtype <U1; expected numbers"):
        read_npz_dir(_npz_dir(tmp_path / "text", **{"feat.text": np.full((1, 2, 3), "a")}))
    with pytest.raises(DataError, match=r"test.npz: holds a pickled object array, which mmer refuses to load"):
        read_npz_dir(_npz_dir(tmp_path / "objects", labels=np.array([[{"a": 1}]], dtype=object)))


def test_data_check_takes_dataset_options_only(capsys):
    from mmer.cli import main

    assert main(["data", "check", "--dataset", "synth-dyadic", "--set", "data.options.size=tiny"]) == 0
    assert "size=tiny" in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "synth-dyadic", "--set", "train.epochs=2"]) == 2
    assert "takes dataset options only" in capsys.readouterr().err
