"""The real-data readers (music-emotions, meld, mosei-text), the mmer-npz reader, pooling and the batch order, on
miniature files written here in the exact on-disk formats (docs/real_data.md, the readers' docstrings), so they run
everywhere, unlike tests/data/test_real_data.py which needs ../shared/data.

Text featurisation is replaced by a stand-in that encodes each transcript "t<k>" as the number k, so a test can see
which transcript ended up in which token.

Mutation audit round 6: each test here failed under a plausible bug that the rest of the suite let through.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer.data.batch import Batch, PartyStructure
from mmer.data.load import load_dataset
from mmer.data.loader import train_batches
from mmer.data.npz_format import read_npz_dir
from mmer.data.pooling import pooled_features
from mmer.data.readers.meld import EMOTIONS, MeldOptions, read_utterances
from mmer.data.readers.mosei_text import LABELS, MoseiTextOptions, read_segments, split_by_video
from mmer.data.readers.music import MusicOptions, fold_splits, read_music
from mmer.errors import ConfigError, DataError
from mmer.featurize.options import TextOptions
from tests.engine.toy_data import make_split


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def numbered_texts(monkeypatch):
    """Featurise transcript 't<k>' as the one-step vector [k] (mask True)."""

    def featurize(self, texts):
        feats = np.array([[[float(t[1:])]] for t in texts], dtype=np.float32)  # [N, 1, 1]
        return feats, np.ones((len(texts), 1), dtype=bool)

    monkeypatch.setattr(TextOptions, "featurize", featurize)


# ------------------------------------------------------------------------------------------ music-emotions

MUSIC_HEADER = ["BH_LowPeakAmp", "happy", "BHSUM1", "Mean_Acc_Centroid", "sad", "Std_Acc_Flux"]


def music_file(root: Path, n: int = 10) -> Path:
    """Labels interleaved with both views; rhythm = (row, 2*row), timbre = (row**2, 5) (a constant column)."""
    rows = [[r, r % 2, 2 * r, r * r, 1 - r % 2, 5] for r in range(n)]
    return write_csv(root / "music.csv", MUSIC_HEADER, rows)


def test_music_labels_are_every_non_feature_column_in_file_order(tmp_path):
    table = read_music(music_file(tmp_path))
    assert table.label_names == ["happy", "sad"]
    np.testing.assert_array_equal(table.views["rhythm"], [[r, 2 * r] for r in range(10)])  # BH_* and BHSUM*
    np.testing.assert_array_equal(table.views["timbre"], [[r * r, 5] for r in range(10)])  # Mean_Acc* and Std_Acc*
    np.testing.assert_array_equal(table.labels[:3], [[0, 1], [1, 0], [0, 1]])


def test_music_folds_rotate_test_then_valid_and_need_three(tmp_path):
    for fold in range(5):
        idx = fold_splits(10, folds=5, fold=fold, seed=4)
        assert np.array_equal(idx["valid"], fold_splits(10, 5, (fold + 1) % 5, 4)["test"])
        assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(10))
    with pytest.raises(ConfigError, match="folds must be at least 3"):
        fold_splits(10, folds=2, fold=0, seed=0)


def test_music_bundle_ids_are_file_rows_and_standardised_with_training_songs(tmp_path):
    music_file(tmp_path)
    bundle = load_dataset("music-emotions", tmp_path, MusicOptions(folds=5, fold=1, seed=7))
    idx = fold_splits(10, 5, 1, 7)
    train_rows = idx["train"].astype(np.float64)
    mean, std = train_rows.mean(), train_rows.std()
    for name, split in bundle.splits.items():
        assert split.ids == [f"song{r}" for r in idx[name]]
        rows = np.array([int(i[4:]) for i in split.ids], dtype=np.float64)
        # BH_LowPeakAmp is the row number: standardised with the training rows' mean and population std
        np.testing.assert_allclose(split.features["rhythm"][:, 0, 0].double().numpy(), (rows - mean) / std, rtol=1e-5)
        assert torch.equal(split.features["timbre"][:, 0, 1], torch.zeros(len(split)))  # constant: only centred
        assert torch.equal(split.labels[:, 0], torch.from_numpy(rows % 2).float())


def test_music_not_a_finite_number_is_named(tmp_path):
    path = write_csv(tmp_path / "music.csv", MUSIC_HEADER, [[0, 1, 0, 0, 0, 5], [1, 0, 2, 1, "nan", 5]])
    with pytest.raises(DataError, match=r"music.csv: line 3, column 'sad': 'nan' is not finite"):
        read_music(path)


# ---------------------------------------------------------------------------------------------------- meld

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season"]


def meld_rows(texts: dict[tuple[int, int], tuple[str, str]], first: int) -> list[list]:
    return [[i, f"t{first + i}", spk, emo, "neutral", d, u, 1] for i, ((d, u), (spk, emo)) in enumerate(texts.items())]


def meld_root(tmp_path: Path) -> Path:
    """train: dialogue 1 listed before dialogue 0, dialogue 0 lacks utterance 2, speakers recur across dialogues."""
    root = tmp_path / "meld"
    train = {
        (1, 0): ("Monica", "joy"), (1, 1): ("Joey", "fear"), (1, 2): ("Monica", "neutral"),
        (0, 3): ("Ross", "anger"), (0, 0): ("Ross", "surprise"), (0, 1): ("Monica", "sadness"),
    }  # fmt: skip
    write_csv(root / "train_sent_emo.csv", MELD_HEADER, meld_rows(train, 0))
    write_csv(root / "dev_sent_emo.csv", MELD_HEADER, meld_rows({(7, 0): ("Rachel", "joy"), (7, 1): ("Ross", "disgust")}, 100))
    write_csv(root / "test_sent_emo.csv", MELD_HEADER, meld_rows({(9, 0): ("Phoebe", "neutral")}, 200))
    return root


def test_meld_utterances_are_ordered_renumbered_and_speakers_counted_per_dialogue(tmp_path):
    utt = read_utterances(meld_root(tmp_path) / "train_sent_emo.csv")
    assert utt.ids == ["dia0_utt0", "dia0_utt1", "dia0_utt3", "dia1_utt0", "dia1_utt1", "dia1_utt2"]
    assert utt.texts == ["t4", "t5", "t3", "t0", "t1", "t2"]
    assert utt.clip.tolist() == [0, 0, 0, 1, 1, 1]
    assert utt.segment.tolist() == [0, 1, 2, 0, 1, 2]  # the gap at utterance 2 is closed
    assert utt.person.tolist() == [0, 1, 0, 0, 1, 0]  # Ross, Monica | Monica, Joey: numbered anew per dialogue
    assert [EMOTIONS[i] for i in utt.labels] == ["surprise", "sadness", "anger", "joy", "fear", "neutral"]


def test_meld_the_same_utterance_twice_names_both_lines(tmp_path):
    path = write_csv(tmp_path / "train_sent_emo.csv", MELD_HEADER, meld_rows({(0, 0): ("Ross", "joy"), (0, 1): ("Ross", "joy")}, 0) + [[9, "t9", "Joey", "joy", "x", 0, 1, 1]])
    with pytest.raises(DataError, match=r"train_sent_emo.csv: lines 3 and 4 are both dialogue 0, utterance 1"):
        read_utterances(path)


def test_meld_grid_is_person_major_and_splits_are_the_official_files(tmp_path, numbered_texts):
    bundle = load_dataset("meld", meld_root(tmp_path), MeldOptions(encoder="glove-50"))
    train = bundle.splits["train"]
    assert train.person.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert train.segment.tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2]]
    token = train.target.float().argmax(dim=1)
    assert token.tolist() == [0, 4, 2, 0, 4, 2]  # token p*S + s of the speaker
    assert train.features["text"][train.clip_index, token, 0].tolist() == [4, 5, 3, 0, 1, 2]  # the utterance's own text
    assert train.masks["text"].tolist() == [[True, False, True, False, True, False]] * 2
    assert train.labels.argmax(dim=1).tolist() == [2, 4, 3, 1, 6, 0]
    valid, test = bundle.splits["valid"], bundle.splits["test"]
    assert valid.ids == ["dia7_utt0", "dia7_utt1"] and test.ids == ["dia9_utt0"]  # dev file = valid
    assert valid.features["text"][0, valid.target[0].float().argmax(), 0] == 100


# ---------------------------------------------------------------------------------------------- mosei-text

MOSEI_HEADER = ["video_id", "start", "end", "split", "sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear", "text"]


def mosei_root(tmp_path: Path, videos: int = 10) -> Path:
    """Two segments per video; the second segment of v0 has no transcript (not a sample)."""
    rows = []
    for v in range(videos):
        for s in range(2):
            intensities = [0.0] * 6
            intensities[(v + s) % 6] = 0.1667 if s else 3.0  # one rater in three saying "a little" counts
            text = "" if (v, s) == (0, 1) else f"t{10 * v + s}"
            rows.append([f"v{v}", 2.5 * s, 2.5 * s + 2.5, "valid", 0.0, *intensities, text])
    write_csv(tmp_path / "mosei" / "mosei_segments.csv", MOSEI_HEADER, rows)
    return tmp_path / "mosei"


def test_mosei_labels_are_intensities_above_zero_in_the_official_order(tmp_path):
    seg = read_segments(mosei_root(tmp_path))
    assert LABELS == ("happy", "sad", "anger", "surprise", "disgust", "fear")
    assert len(seg.ids) == 19 and "v0_5.0" not in seg.ids  # the segment without transcript is skipped
    assert seg.ids[:3] == ["v0_2.5", "v1_2.5", "v1_5.0"] and seg.texts[:3] == ["t0", "t10", "t11"]
    np.testing.assert_array_equal(seg.labels[:3], [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]])
    surprise = seg.ids.index("v3_2.5")
    assert seg.labels[surprise].tolist() == [0, 0, 0, 1, 0, 0]


def test_mosei_duplicate_segment_is_named(tmp_path):
    row = ["v1", 0, 2.5, "valid", 0, 0, 0, 0, 0, 0, 0, "hi"]
    write_csv(tmp_path / "mosei_segments.csv", MOSEI_HEADER, [row, row])
    with pytest.raises(DataError, match=r"segment 'v1_2.5' \(video, end time\) appears twice"):
        read_segments(tmp_path)


def test_mosei_split_by_video_sizes_and_independence_of_row_order():
    videos = [f"v{i}" for i in range(10) for _ in range(3)]
    split = split_by_video(videos, seed=0, valid_fraction=0.1, test_fraction=0.2)
    per_video = {v: set(split[[i for i, w in enumerate(videos) if w == v]].tolist()) for v in set(videos)}
    assert all(len(s) == 1 for s in per_video.values())  # no video in two splits
    counts = np.bincount([next(iter(s)) for s in per_video.values()], minlength=3).tolist()
    assert counts == [7, 1, 2]  # train, valid (10%), test (20%) of the videos
    shuffled = videos[::-1][5:] + videos[::-1][:5]
    again = split_by_video(shuffled, seed=0, valid_fraction=0.1, test_fraction=0.2)
    assert {v: int(s) for v, s in zip(shuffled, again)} == {v: next(iter(s)) for v, s in per_video.items()}


def test_mosei_text_bundle(tmp_path, numbered_texts):
    root = mosei_root(tmp_path)
    bundle = load_dataset("mosei-text", root, MoseiTextOptions(valid_fraction=0.1, test_fraction=0.2))
    seg = read_segments(root)
    split_of = split_by_video(seg.videos, 0, 0.1, 0.2)
    for code, name in enumerate(("train", "valid", "test")):
        split = bundle.splits[name]
        rows = np.flatnonzero(split_of == code)
        assert split.ids == [seg.ids[i] for i in rows]
        assert split.features["text"][:, 0, 0].tolist() == [float(seg.texts[i][1:]) for i in rows]
        assert torch.equal(split.labels, torch.from_numpy(seg.labels[rows]))
        for m in ("visual", "audio"):
            assert split.features[m].shape == (len(rows), 1, 1) and not split.masks[m].any()


# ---------------------------------------------------------------------------------------------- mmer-npz


def npz_dir(root: Path, meta: dict, **test_arrays) -> Path:
    root.mkdir()
    (root / "meta.json").write_text(json.dumps(meta))
    arrays = {"labels": np.array([[1, 0], [0, 1], [1, 1]], np.uint8), "ids": np.array(["a", "b", "c"]),
              "feat.text": np.arange(18, dtype=np.float32).reshape(3, 2, 3), "mask.text": np.ones((3, 2), bool)}  # fmt: skip
    for split in ("train", "valid", "test"):
        np.savez(root / f"{split}.npz", **(arrays | test_arrays if split == "test" else arrays))
    return root


def test_npz_minimal_directory_defaults(tmp_path):
    """No version, no name, no clip_index: version 1, the folder's name, one clip per sample."""
    bundle = read_npz_dir(npz_dir(tmp_path / "my-data", {"format": "mmer-npz", "label_names": ["x", "y"], "modalities": ["text"]}))
    assert bundle.spec.name == "my-data" and list(bundle.spec.label_names) == ["x", "y"]
    test = bundle.splits["test"]
    assert test.clip_index.tolist() == [0, 1, 2] and test.ids == ["a", "b", "c"]
    assert torch.equal(test.batch(torch.tensor([2])).features["text"][0], torch.arange(12, 18, dtype=torch.float32).reshape(2, 3))


def test_npz_inconsistent_arrays_are_refused_when_read(tmp_path):
    meta = {"format": "mmer-npz", "version": 1, "label_names": ["x", "y"], "modalities": ["text"]}
    with pytest.raises(DataError, match=r"split 'test': field 'clip_index' points outside the 3 clips"):
        read_npz_dir(npz_dir(tmp_path / "d", meta, clip_index=np.array([0, 1, 3])))


# ------------------------------------------------------------------------------------ pooling, batch order


def test_pooled_features_are_masked_means_with_presence_flags_and_target_means():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])  # [B=2, L=3, D=1]
    mask = torch.tensor([[True, True, False], [False, False, False]])
    target = torch.tensor([[False, True, True], [True, False, False]])  # token 2 of sample 0 is padding
    person = torch.zeros(2, 3, dtype=torch.long)
    batch = Batch({"text": x}, {"text": mask}, torch.zeros(2, 1), ["a", "b"], torch.arange(2), party=PartyStructure(person, person, target))
    pooled = pooled_features(batch)
    # [mean over real tokens, any real token, mean over real target tokens, any real target token]
    assert pooled.tolist() == [[2.0, 1.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    partial = Batch({"text": x}, {"text": torch.tensor([[True, False, False], [True, True, True]])}, torch.zeros(2, 1), ["a", "b"], torch.arange(2))
    assert pooled_features(partial)[:, 1].tolist() == [1.0, 1.0]  # present when any token is real


def test_training_order_differs_between_seeds_at_every_epoch():
    """Seed s at epoch e must not replay seed s+1 at epoch e-1 (seeds of a benchmark are consecutive)."""
    split = make_split(30, 0)

    def order(seed, epoch):
        return [i for b in train_batches(split, 10, seed, epoch) for i in b.index.tolist()]

    assert order(1, 2) != order(2, 1) and order(1, 1) != order(2, 0)
