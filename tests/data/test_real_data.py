"""The real-data readers (mosei-text, music-emotions, meld) on the shared data folder and small extracts of it.

Label parsing and splits are checked on the full files (CSV only, fast); anything that featurises text runs on a
few rows copied to tmp_path in the same format, with the feature cache in tmp_path.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.data.load import load_dataset
from mmer.data.readers.meld import EMOTIONS, MeldOptions, read_utterances
from mmer.data.readers.mosei_text import LABELS, MoseiTextOptions, read_segments, split_by_video
from mmer.data.readers.music import MusicOptions, fold_splits, read_music
from mmer.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared real-data folder {DATA} is not present")
MOSEI, MUSIC, MELD = DATA / "cmu_mosei", DATA / "emotions_music", DATA / "meld"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMER_CACHE_DIR", str(tmp_path / "cache"))


def copy_rows(src: Path, dst: Path, keep) -> int:
    """Copy the header and the rows for which keep(row) is true; returns the number of rows kept."""
    with src.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if keep(r)]
        header = reader.fieldnames
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


# ------------------------------------------------------------------------------------------------ mosei-text


def test_mosei_labels_of_all_transcribed_segments():
    seg = read_segments(MOSEI)
    assert len(seg.ids) == 6533 and len(set(seg.videos)) == 976
    assert seg.labels.sum(axis=0).astype(int).tolist() == [3510, 1649, 1409, 644, 1086, 561]
    assert int((seg.labels.sum(axis=1) == 0).sum()) == 1004
    first = seg.ids.index("--qXJuDtHPw_30.325")  # happy 0.667, every other emotion 0
    assert seg.labels[first].tolist() == [1, 0, 0, 0, 0, 0]
    assert seg.texts[first].startswith("I see that a writer is somebody")


def test_mosei_transcript_csvs_give_the_same_segments(tmp_path):
    for name in ("Data_Val_original_without_neg_time.csv", "Data_Test_original_without_neg_time.csv"):
        (tmp_path / name).write_bytes((MOSEI / name).read_bytes())
    from_pair, from_segments = read_segments(tmp_path), read_segments(MOSEI)
    order = np.argsort(from_pair.ids)
    assert sorted(from_pair.ids) == sorted(from_segments.ids)
    np.testing.assert_array_equal(from_pair.labels[order], from_segments.labels[np.argsort(from_segments.ids)])


def test_mosei_resplit_is_by_video_seeded_and_documented():
    seg = read_segments(MOSEI)
    split = split_by_video(seg.videos, seed=0, valid_fraction=0.1, test_fraction=0.2)
    assert np.bincount(split).tolist() == [4612, 650, 1271]  # the sizes in docs/real_data.md
    videos = np.asarray(seg.videos)
    assert all(len(set(split[videos == v])) == 1 for v in np.unique(videos)[:200])
    assert np.array_equal(split, split_by_video(list(reversed(seg.videos)), 0, 0.1, 0.2)[::-1])
    assert not np.array_equal(split, split_by_video(seg.videos, 1, 0.1, 0.2))
    with pytest.raises(ConfigError, match="must be positive and sum to less than 1"):
        split_by_video(seg.videos, 0, 0.5, 0.5)


def mosei_extract(tmp_path: Path, n_videos: int = 12) -> Path:
    videos: list[str] = []

    def keep(row):
        if row["text"] and row["video_id"] not in videos and len(videos) < n_videos:
            videos.append(row["video_id"])
        return bool(row["text"]) and row["video_id"] in videos

    copy_rows(MOSEI / "mosei_segments.csv", tmp_path / "mosei" / "mosei_segments.csv", keep)
    return tmp_path / "mosei"


def test_mosei_text_bundle_has_text_and_absent_audio_visual(tmp_path):
    root = mosei_extract(tmp_path)
    bundle = load_dataset("mosei-text", root, MoseiTextOptions(valid_fraction=0.2, test_fraction=0.2))
    assert bundle.spec.label_names == LABELS and bundle.spec.modality_names == ("text", "visual", "audio")
    assert bundle.spec.modality("text").dim == 50 and bundle.spec.modality("visual").dim == 1
    seg = read_segments(root)
    for split in bundle.splits.values():
        assert split.features["text"].shape[1:] == (60, 50)
        assert split.masks["text"].any(dim=1).all()  # every segment has a transcript
        for m in ("visual", "audio"):
            assert split.features[m].shape == (len(split), 1, 1) and not split.masks[m].any()
        rows = [seg.ids.index(i) for i in split.ids]
        assert torch.equal(split.labels, torch.from_numpy(seg.labels[rows]))
    assert sum(len(s) for s in bundle.splits.values()) == len(seg.ids)


def test_mosei_text_with_minilm_sentences(tmp_path):
    root = mosei_extract(tmp_path, n_videos=5)
    bundle = load_dataset("mosei-text", root, MoseiTextOptions(encoder="minilm", valid_fraction=0.2, test_fraction=0.2))
    assert bundle.spec.modality("text").dim == 384 and bundle.spec.modality("text").max_len == 1


def test_mosei_bad_intensity_names_file_line_and_column(tmp_path):
    path = tmp_path / "mosei_segments.csv"
    path.write_text("video_id,start,end,split,sentiment,happy,sad,anger,surprise,disgust,fear,text\n"
                    "v1,0,1,valid,0,0.3,x,0,0,0,0,hello\n")
    with pytest.raises(DataError, match=r"mosei_segments.csv: line 2, column 'sad': 'x' is not a number"):
        read_segments(tmp_path)
    with pytest.raises(DataError, match="mosei-text needs mosei_segments.csv"):
        read_segments(tmp_path / "nowhere")


# -------------------------------------------------------------------------------------------- music-emotions


def test_music_labels_and_views_come_from_the_header():
    table = read_music(MUSIC / "music.csv")
    assert table.label_names == ["amazed-suprised", "happy-pleased", "relaxing-clam", "quiet-still", "sad-lonely", "angry-aggresive"]
    assert table.labels.shape == (593, 6) and table.labels.sum(axis=0).astype(int).tolist() == [173, 166, 264, 148, 168, 189]
    assert table.views["rhythm"].shape == (593, 8) and table.views["timbre"].shape == (593, 64)


def test_music_folds_partition_the_songs_and_test_each_song_once():
    tested = []
    for fold in range(5):
        idx = fold_splits(593, folds=5, fold=fold, seed=0)
        every = np.concatenate(list(idx.values()))
        assert len(every) == 593 and len(np.unique(every)) == 593
        tested.append(idx["test"])
        assert np.array_equal(idx["valid"], fold_splits(593, 5, (fold + 1) % 5, 0)["test"])
    assert np.array_equal(np.sort(np.concatenate(tested)), np.arange(593))
    with pytest.raises(ConfigError, match="fold must be in 0..4, got 5"):
        fold_splits(593, 5, 5, 0)


def test_music_bundle_is_standardised_with_training_statistics():
    bundle = load_dataset("music-emotions", MUSIC, MusicOptions(fold=2, seed=3))
    assert bundle.spec.modality_names == ("rhythm", "timbre") and bundle.spec.num_labels == 6
    train = bundle.splits["train"]
    for m, dim in (("rhythm", 8), ("timbre", 64)):
        x = train.features[m][:, 0].double()  # [N, D]
        assert x.shape[1] == dim and train.masks[m].all()
        torch.testing.assert_close(x.mean(dim=0), torch.zeros(dim, dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(x.std(dim=0, unbiased=False), torch.ones(dim, dtype=torch.float64), atol=1e-4, rtol=0)
    assert abs(bundle.splits["test"].features["timbre"].mean().item()) > 1e-4  # test rows are not re-centred


def test_music_check_from_the_cli(capsys):
    assert main(["data", "check", "--dataset", "music-emotions", "--root", str(MUSIC)]) == 0
    out = capsys.readouterr().out
    assert "| train | 355 | 355 | [355, 1, 8] (100%) | [355, 1, 64] (100%) |" in out and "OK" in out


# ------------------------------------------------------------------------------------------------------ meld


def test_meld_utterances_speakers_and_segments():
    utt = read_utterances(MELD / "dev_sent_emo.csv")
    assert len(utt.ids) == 1109 and int(utt.clip.max()) + 1 == 114
    d1 = utt.clip == 1  # Ross, Chandler, Joey, Chandler, Phoebe, All, Phoebe, Rachel, ... Monica
    assert utt.person[d1].tolist()[:8] == [0, 1, 2, 1, 3, 4, 3, 5]
    assert utt.segment[d1].tolist() == list(range(16))
    assert [EMOTIONS[i] for i in utt.labels[d1][:3]] == ["neutral", "joy", "sadness"]
    gap = np.array([i.startswith("dia49_") for i in utt.ids])  # utterances 4 and 5 are missing from MELD
    assert utt.ids[int(np.flatnonzero(gap)[4])] == "dia49_utt6" and utt.segment[gap].tolist() == list(range(13))


def meld_extract(tmp_path: Path) -> Path:
    root = tmp_path / "meld"
    for name, dialogues in (("train_sent_emo.csv", {"0", "1", "2"}), ("dev_sent_emo.csv", {"49"}), ("test_sent_emo.csv", {"66"})):
        copy_rows(MELD / "dev_sent_emo.csv", root / name, lambda r, d=dialogues: r["Dialogue_ID"] in d)
    return root


@pytest.mark.parametrize("layout", ["grid", "utterance"])
def test_meld_bundle_marks_the_speaker_token_of_each_utterance(tmp_path, layout):
    root = meld_extract(tmp_path)
    bundle = load_dataset("meld", root, MeldOptions(encoder="glove-50", layout=layout))
    train = bundle.splits["train"]
    assert bundle.spec.multi_party and bundle.spec.label_names == EMOTIONS
    assert len(train) == 2 + 16 + 6 and train.num_clips == 3
    assert train.labels.sum(dim=1).eq(1).all()  # one-hot
    utt = read_utterances(root / "train_sent_emo.csv")
    clip = train.clip_index
    target_token = train.target.float().argmax(dim=1)  # [N]
    assert torch.equal(train.target.sum(dim=1), torch.ones(len(train), dtype=torch.long))
    assert torch.equal(train.person[clip, target_token], torch.from_numpy(utt.person))
    assert torch.equal(train.segment[clip, target_token], torch.from_numpy(utt.segment))
    assert train.masks["text"][clip, target_token].all()
    # exactly one token with text per utterance: only the speaker speaks
    assert int(train.masks["text"].sum()) == len(train)
    persons, segments = 7, 16  # dialogue 1: Ross, Chandler, Joey, Phoebe, All, Rachel, Monica
    expected_tokens = persons * segments if layout == "grid" else segments
    assert int((train.person[1] >= 0).sum()) == expected_tokens
    batch = train.batch(torch.arange(len(train)))
    assert batch.party is not None and batch.features["text"].shape[1] == train.person.shape[1]


def test_meld_valid_and_test_are_the_official_dev_and_test_files(tmp_path):
    """valid = dev_sent_emo.csv and test = test_sent_emo.csv (the extract puts dialogue 49 in dev, 66 in test)."""
    bundle = load_dataset("meld", meld_extract(tmp_path), MeldOptions(encoder="glove-50", layout="utterance"))
    assert {i.split("_")[0] for i in bundle.splits["valid"].ids} == {"dia49"}
    assert {i.split("_")[0] for i in bundle.splits["test"].ids} == {"dia66"}


def test_meld_layouts_carry_the_same_utterance_vectors(tmp_path):
    root = meld_extract(tmp_path)
    grid = load_dataset("meld", root, MeldOptions(encoder="glove-50")).splits["test"]
    lean = load_dataset("meld", root, MeldOptions(encoder="glove-50", layout="utterance")).splits["test"]

    def target_vectors(split):
        token = split.target.float().argmax(dim=1)
        return split.features["text"][split.clip_index, token]

    torch.testing.assert_close(target_vectors(grid), target_vectors(lean), rtol=0, atol=0)


def test_meld_check_from_the_cli_with_minilm(tmp_path, capsys):
    root = meld_extract(tmp_path)
    assert main(["data", "check", "--dataset", "meld", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "multi-party: up to 7 persons x 16 segments per clip" in out and "| train | 24 | 3 | [3, 112, 384] (100%) |" in out


def test_meld_bad_emotion_and_token_pooling_are_refused(tmp_path):
    path = tmp_path / "train_sent_emo.csv"
    path.write_text("Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\nHi,Ross,happy,0,0\n")
    with pytest.raises(DataError, match=r"line 2, column 'Emotion': 'happy' is not one of neutral, joy"):
        read_utterances(path)
    with pytest.raises(ConfigError, match="one vector per utterance"):
        load_dataset("meld", meld_extract(tmp_path), MeldOptions(pooling="tokens"))  # type: ignore[arg-type]
