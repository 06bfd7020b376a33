import collections

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.data.load import load_dataset
from mmer.data.readers.m3ed import M3ED_LABELS, RELEASE_PICKLES, M3EDOptions
from mmer.errors import DataError
from tests.data.official_files import m3ed_tuple, write_m3ed_converted, write_m3ed_pickle

SPLIT_INDEX = {"train": 7, "valid": 8, "test": 9}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("m3ed")
    return root, write_m3ed_pickle(root / RELEASE_PICKLES[0])


@pytest.fixture(scope="module")
def converted(tmp_path_factory, release):
    root = tmp_path_factory.mktemp("m3ed_converted")
    write_m3ed_converted(root / "m3ed_data_60.pt", release[1])
    return root


def test_dialogues_become_multi_label_samples_cut_at_60_utterances(release):
    root, data = release
    bundle = load_dataset("m3ed", root)
    assert bundle.spec.label_names == M3ED_LABELS == ("Happy", "Neutral", "Sad", "Disgust", "Anger", "Fear", "Surprise")
    for split, index in SPLIT_INDEX.items():
        part = bundle.splits[split]
        assert part.ids == data[index]
        for k, dialogue in enumerate(data[index]):
            expected = np.zeros(7, dtype=np.float32)
            expected[sorted(set(data[2][dialogue]))] = 1  # union of every utterance's emotion
            np.testing.assert_array_equal(part.labels[k].numpy(), expected)
            n = min(len(data[2][dialogue]), 60)
            np.testing.assert_array_equal(part.features["text"][k, :n].numpy(), data[3][dialogue][:n])
            assert (part.features["text"][k, n:] == 0).all()
            assert part.masks["text"][k].sum() == n and part.masks["text"][k, :n].all()
    train = bundle.splits["train"]
    assert train.features["text"].shape == (4, 60, 768)
    assert train.labels[0, M3ED_LABELS.index("Surprise")] == 1  # only utterance 61 (past the cut) is Surprise


def test_modalities_are_named_by_content_with_an_option_for_carats_names(release):
    root, data = release
    correct = load_dataset("m3ed", root)
    assert [(m.name, m.dim) for m in correct.spec.modalities] == [("text", 768), ("visual", 342), ("audio", 1024)]
    np.testing.assert_array_equal(correct.splits["test"].features["audio"][0, :6].numpy(), data[4]["xiaobieli_4"])  # wav2vec
    np.testing.assert_array_equal(correct.splits["test"].features["visual"][0, :6].numpy(), data[5]["xiaobieli_4"])  # DenseFace
    carat = load_dataset("m3ed", root, M3EDOptions(modality_names="carat"))
    assert [(m.name, m.dim) for m in carat.spec.modalities] == [("text", 768), ("visual", 1024), ("audio", 342)]
    assert torch.equal(carat.splits["train"].features["visual"], correct.splits["train"].features["audio"])


def test_ones_masks_and_a_shorter_cut(release):
    root, data = release
    ones = load_dataset("m3ed", root, M3EDOptions(masks="ones")).splits["valid"]
    assert all(ones.masks[m].all() for m in ones.masks)
    short = load_dataset("m3ed", root, M3EDOptions(max_utterances=4)).splits["valid"]
    assert short.features["audio"].shape == (2, 4, 1024)
    expected = np.zeros(7, dtype=np.float32)
    expected[sorted(set(data[2]["zhengfu_2"]))] = 1  # 12 utterances, labels still from all of them
    np.testing.assert_array_equal(short.labels[1].numpy(), expected)


@pytest.mark.parametrize("naming", ["correct", "carat"])
def test_carats_converted_file_reads_like_the_release_pickle(release, converted, naming):
    options = M3EDOptions(modality_names=naming)
    from_pickle = load_dataset("m3ed", release[0], options)
    from_pt = load_dataset("m3ed", converted, options)
    assert from_pt.spec == from_pickle.spec
    for split in SPLIT_INDEX:
        a, b = from_pt.splits[split], from_pickle.splits[split]
        assert torch.equal(a.labels, b.labels)
        for m in a.features:
            assert torch.equal(a.features[m], b.features[m]) and torch.equal(a.masks[m], b.masks[m])


def changed(change):
    data = list(m3ed_tuple())
    change(data)
    return tuple(data)


ERRORS = {
    "emotion id": (lambda d: d[2]["anjia_2"].__setitem__(0, 7), r"tuple index 2: dialogue 'anjia_2' has emotion id 7, outside 0..6"),
    "missing dialogue": (lambda d: d[4].pop("zhengfu_1"), r"tuple index 4 \(audio\) has no dialogue 'zhengfu_1'"),
    "rows differ": (lambda d: d[3].__setitem__("anjia_3", np.zeros((8, 768), np.float32)), r"tuple index 3 \(text\): dialogue 'anjia_3' must be a numeric \[9 utterances, D\] array"),
    "dims differ": (lambda d: d[5].__setitem__("anjia_3", np.zeros((9, 100), np.float32)), r"tuple index 5 \(visual\): dialogue 'anjia_3' has 100-d features"),
    "not a dict": (lambda d: d.__setitem__(3, [1, 2]), r"tuple index 3 \(text features\) must be a dict keyed by dialogue id"),
    "nan": (lambda d: d[3]["xiaobieli_5"].__setitem__((1, 3), np.nan), r"split 'test': features of modality 'text' contain NaN"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_file_field_and_problem(tmp_path, case):
    change, message = ERRORS[case]
    write_m3ed_pickle(tmp_path / "features.pkl", changed(change))
    with pytest.raises(DataError, match=message) as err:
        load_dataset("m3ed", tmp_path, M3EDOptions(file="features.pkl"))
    assert "features.pkl" in str(err.value)


def test_unknown_layouts_and_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"'m3ed' needs --root"):
        load_dataset("m3ed", None)
    with pytest.raises(DataError, match=r"Asent_wav2vec.*: file is missing"):
        load_dataset("m3ed", tmp_path)
    torch.save(collections.OrderedDict(a=1), tmp_path / "m3ed_data_60.pt")
    with pytest.raises(DataError, match=r"m3ed_data_60.pt: split 'train' is missing"):
        load_dataset("m3ed", tmp_path)


@pytest.mark.parametrize("fixture", ["release", "converted"])
def test_cli_data_check(fixture, request, capsys):
    value = request.getfixturevalue(fixture)
    root = value[0] if isinstance(value, tuple) else value
    assert main(["data", "check", "--dataset", "m3ed", "--root", str(root)]) == 0
    assert "Happy, Neutral, Sad, Disgust, Anger, Fear, Surprise" in capsys.readouterr().out


def test_converted_file_masks_come_from_len_list(tmp_path):
    """In m3ed_data_60.pt an utterance within len_list is real even when all its features are zero."""
    data = m3ed_tuple()
    for index in (3, 4, 5):
        data[index]["anjia_2"][2] = 0.0  # utterance 2 of 5 has no features at all
    write_m3ed_converted(tmp_path / "m3ed_data_60.pt", data)
    train = load_dataset("m3ed", tmp_path).splits["train"]
    for m in ("text", "visual", "audio"):
        assert train.masks[m][1].tolist() == [True] * 5 + [False] * 55  # anjia_2
        assert train.masks[m][0].all()  # anjia_1: 62 utterances, cut at 60
