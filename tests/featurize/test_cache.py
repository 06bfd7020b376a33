import numpy as np
import pytest

from mmer.featurize import TextEncoding, cache as cache_mod
from mmer.featurize.cache import cache_key, default_cache_dir, featurize_cached

TEXTS = ["the cat sat", "a dog ran", ""]


def test_second_call_reads_the_cache_instead_of_featurising(tmp_path, monkeypatch):
    enc = TextEncoding("glove-50")
    feats, mask = featurize_cached(TEXTS, enc, cache_dir=tmp_path)
    assert len(list((tmp_path / "text").glob("*.npz"))) == 1

    def fail(*_):
        raise AssertionError("featurised again although cached")

    monkeypatch.setattr(cache_mod, "featurize_texts", fail)
    again, again_mask = featurize_cached(TEXTS, enc, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, feats)
    np.testing.assert_array_equal(again_mask, mask)
    with pytest.raises(AssertionError, match="featurised again"):
        featurize_cached(TEXTS, enc, cache=False)


def test_key_changes_with_texts_order_and_options():
    key = cache_key(TEXTS, TextEncoding("glove-50"))
    assert key == cache_key(list(TEXTS), TextEncoding("glove-50", pooling="tokens", max_len=60, batch_size=7))
    assert key != cache_key(TEXTS[::-1], TextEncoding("glove-50"))
    assert key != cache_key(["the cat", "sat a dog ran", ""], TextEncoding("glove-50"))
    assert key != cache_key(TEXTS, TextEncoding("glove-50", max_len=59))
    assert key != cache_key(TEXTS, TextEncoding("glove-50", oov="skip"))


def test_a_corrupt_cache_entry_is_recomputed(tmp_path):
    enc = TextEncoding("glove-50", pooling="mean")
    feats, _ = featurize_cached(TEXTS, enc, cache_dir=tmp_path)
    (entry,) = (tmp_path / "text").glob("*.npz")
    entry.write_bytes(b"garbage")
    again, _ = featurize_cached(TEXTS, enc, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, feats)
    assert entry.read_bytes() != b"garbage"


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MMER_CACHE_DIR", str(tmp_path / "m"))
    assert default_cache_dir() == tmp_path / "m"
    monkeypatch.delenv("MMER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "mmer"
