import numpy as np
import pytest

from mmer.errors import ConfigError
from mmer.featurize import TextEncoding, featurize_texts
from mmer.featurize.encoders import _glove

# First components of well-known GloVe 6B-50d vectors.
THE = [0.418, 0.24968, -0.41242, 0.1217, 0.34527]


def glove(texts, **kw):
    return featurize_texts(texts, TextEncoding("glove-50", **kw))


def row(word):
    vectors = _glove()
    return np.asarray(vectors.vectors[vectors.index[word]])


def test_word_sequence_shapes_padding_and_vectors():
    feats, mask = glove(["The cat sat.", ""])
    assert feats.shape == (2, 60, 50) and feats.dtype == np.float32
    assert mask.shape == (2, 60) and mask.dtype == bool
    assert mask[0].tolist() == [True] * 4 + [False] * 56  # the cat sat .
    np.testing.assert_allclose(feats[0, 0, :5], THE)
    np.testing.assert_array_equal(feats[0, 3], row("."))
    assert not feats[0, 4:].any()  # padding is zeros and masked
    assert not mask[1].any() and not feats[1].any()  # empty text: no tokens at all


def test_unknown_words_are_zero_vectors_or_dropped():
    feats, mask = glove(["qxzzyv the"])
    assert mask[0, :2].all() and not feats[0, 0].any()
    np.testing.assert_array_equal(feats[0, 1], row("the"))
    feats, mask = glove(["qxzzyv the"], oov="skip")
    assert mask[0].sum() == 1
    np.testing.assert_array_equal(feats[0, 0], row("the"))


def test_unknown_compounds_fall_back_to_their_parts():
    feats, mask = glove(["y'know"])
    assert mask[0].sum() == 2
    np.testing.assert_array_equal(feats[0, :2], np.stack([row("y"), row("know")]))


def test_long_texts_keep_their_first_max_len_words():
    words = [str(i) for i in range(70)]  # "0".."69", all in GloVe
    feats, mask = glove([" ".join(words)], max_len=60)
    assert mask[0].all()
    np.testing.assert_array_equal(feats[0, 59], row("59"))
    feats, mask = glove([" ".join(words)], max_len=5)
    assert feats.shape == (1, 5, 50)


def test_mean_pooling_averages_known_words_only():
    feats, mask = glove(["the qxzzyv cat", "qxzzyv"], pooling="mean")
    assert feats.shape == (2, 1, 50) and mask.tolist() == [[True], [False]]
    np.testing.assert_allclose(feats[0, 0], (row("the") + row("cat")) / 2, rtol=1e-6)
    assert not feats[1].any()


def test_featurising_twice_is_bit_identical():
    texts = ["Hello there!", "I can't believe it’s not butter…", ""]
    a, b = glove(texts), glove(texts)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_bad_options_are_refused_with_the_valid_values():
    with pytest.raises(ConfigError, match="pooling 'cls' is not available for encoder 'glove-50'; valid: tokens, mean"):
        glove(["x"], pooling="cls")
    with pytest.raises(ConfigError, match="unknown text encoder 'glove'"):
        featurize_texts(["x"], TextEncoding("glove"))
    with pytest.raises(ConfigError, match="max_len"):
        glove(["x"], max_len=0)
