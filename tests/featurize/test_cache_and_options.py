"""Text-feature cache, the readers' text options, the feature file check and one tokenizer rule.

Mutation audit round 6: each test here failed under a plausible bug that the rest of the suite let through.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmer.errors import DataError
from mmer.featurize import TextEncoding
from mmer.featurize.cache import cache_key, default_cache_dir, featurize_cached
from mmer.featurize.files import read_text_features, write_npz
from mmer.featurize.options import TextOptions
from mmer.featurize.tokenize import word_tokens


def cached_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npz"))


def test_cache_key_separates_texts_whose_concatenation_is_equal():
    enc = TextEncoding("glove-50")
    assert cache_key(["ab", "c"], enc) != cache_key(["a", "bc"], enc)
    assert cache_key(["ab", ""], enc) != cache_key(["", "ab"], enc)


def test_an_unwritable_cache_folder_warns_and_still_returns_the_features(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the text-feature cache"):
        feats, mask = featurize_cached(["the cat"], TextEncoding("glove-50", pooling="mean"), cache_dir=blocker)
    assert feats.shape == (1, 1, 50) and mask.tolist() == [[True]]


def test_cache_folder_defaults_to_dot_cache_in_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MMER_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "mmer"


def test_text_options_use_their_cache_folder_or_none(monkeypatch, tmp_path):
    monkeypatch.setenv("MMER_CACHE_DIR", str(tmp_path / "env"))
    TextOptions(cache_dir=str(tmp_path / "mine")).featurize(["hello there"])
    assert [p.parent for p in cached_files(tmp_path)] == [tmp_path / "mine" / "text"]
    TextOptions(cache=False, cache_dir=str(tmp_path / "off")).featurize(["hello again"])
    assert not (tmp_path / "off").exists() and not (tmp_path / "env").exists()


def test_text_options_pass_oov_and_max_len_to_the_encoder(tmp_path):
    text = ["qzxvwj the cat sat"]  # the first word has no GloVe vector
    zero, zmask = TextOptions(max_len=8, cache=False).featurize(text)
    skip, smask = TextOptions(max_len=8, oov="skip", cache=False).featurize(text)
    assert zero.shape == (1, 8, 50) and zmask.sum() == 4 and not zero[0, 0].any()
    assert smask.sum() == 3 and np.array_equal(skip[0, :3], zero[0, 1:4])


def test_feature_file_with_ids_of_the_wrong_length_is_refused(tmp_path):
    path = tmp_path / "f.npz"
    arrays = {"ids": np.array(["a", "b"]), "feat.text": np.zeros((1, 2, 3), np.float32), "mask.text": np.ones((1, 2), bool),
              "meta": np.array(json.dumps({}))}  # fmt: skip
    write_npz(path, arrays, overwrite=False)
    with pytest.raises(DataError, match=r"f.npz: 'ids' has \(2,\) entries for 1 rows"):
        read_text_features(path)


def test_a_single_letter_before_a_full_stop_is_a_word_and_a_period():
    assert word_tokens("I got an A.") == ["i", "got", "an", "a", "."]
