import copy

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.data.load import load_dataset
from mmer.data.readers.label_sequences import label_sequence_bundle
from mmer.data.readers.mosei import ALIGNED_FIELDS, MOSEI_LABELS, MoseiAlignedOptions, MoseiUnalignedOptions
from mmer.errors import DataError
from tests.data.official_files import mosei_aligned_content, write_mosei_aligned, write_mosei_unaligned

SPLITS = ("train", "valid", "test")


def multi_hot(targets, num_labels=6):
    out = np.zeros((len(targets), num_labels), dtype=np.float32)
    for i, t in enumerate(targets):
        for e in t[1:-1]:
            out[i, e - 4] = 1
    return out


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    root = tmp_path_factory.mktemp("mosei")
    content = write_mosei_aligned(root / "train_valid_test.pt")
    return root, content


def test_aligned_shapes_labels_and_float32_features(aligned):
    root, content = aligned
    bundle = load_dataset("mosei-aligned", root)
    assert bundle.spec.modality_names == ("text", "visual", "audio")
    assert [(m.dim, m.max_len) for m in bundle.spec.modalities] == [(300, 60), (35, 60), (74, 60)]
    assert bundle.spec.label_names == MOSEI_LABELS
    for split in SPLITS:
        data, part = bundle.splits[split], content[split]
        n = len(part["tgt"])
        assert data.features["text"].shape == (n, 60, 300) and data.features["text"].dtype == torch.float32
        np.testing.assert_array_equal(data.labels.numpy(), multi_hot(part["tgt"]))
        assert data.labels[-1].sum() == 0  # empty label sets are kept
        assert data.ids == [f"{split}-{i}" for i in range(n)]
        np.testing.assert_array_equal(data.features["visual"].numpy(), part["src-visual"].astype(np.float32))


def test_aligned_masks_mark_the_zero_padding_and_ones_reproduces_the_official(aligned):
    root, content = aligned
    real = load_dataset("mosei-aligned", root).splits["train"]
    padded = ~np.any(content["train"]["src-text"] != 0, axis=2)  # fixture pads every modality at the same steps
    for m in ("text", "visual", "audio"):
        np.testing.assert_array_equal(real.masks[m].numpy(), ~padded)
    assert not real.masks["text"].all() and real.masks["text"][0].all()  # sample 0 has no padding
    ones = load_dataset("mosei-aligned", root, MoseiAlignedOptions(masks="ones")).splits["train"]
    assert all(ones.masks[m].all() for m in ones.masks)


def test_neg_inf_audio_becomes_zero_on_a_copy(aligned):
    root, content = aligned
    audio = load_dataset("mosei-aligned", root).splits["train"].features["audio"]
    assert torch.isfinite(audio).all() and (audio[0, -1, :3] == 0).all() and audio[0, -1, 3] != 0
    mine = copy.deepcopy(content)
    bundle = label_sequence_bundle(mine, "in memory", "mosei-aligned", MOSEI_LABELS, ALIGNED_FIELDS)
    assert np.isneginf(mine["train"]["src-audio"][0, -1, :3]).all()  # the caller's arrays are untouched
    assert (bundle.splits["train"].features["audio"][0, -1, :3] == 0).all()
    assert bundle.splits["train"].masks["audio"][0, -1]  # a step with -inf audio is a real step


def test_a_step_is_padding_only_when_every_modality_is_exactly_zero():
    """docs/datasets.md: a step is real unless all three modalities are zero there, even if audio is only -inf."""
    content = mosei_aligned_content(sizes={"train": 3, "valid": 2, "test": 2}, length=8)
    x = {m: content["train"][key][0] for m, key in ALIGNED_FIELDS.items()}  # sample 0 has no padding
    for m in x:
        x[m][1:4] = 0.0
    x["visual"][1, ::2] = 1.0  # step 1: text and audio zero, visual partly zero
    x["audio"][2, :3] = -np.inf  # step 2: only -inf audio
    bundle = label_sequence_bundle(content, "in memory", "mosei-aligned", MOSEI_LABELS, ALIGNED_FIELDS)
    for m in ALIGNED_FIELDS:  # step 3: every modality zero -> padding
        assert bundle.splits["train"].masks[m][0, :5].tolist() == [True, True, True, False, True]


def test_float32_arrays_given_in_memory_are_not_changed():
    """label_sequence_bundle never changes the caller's arrays, also when they are already float32 (no cast copy)."""
    content = mosei_aligned_content(sizes={"train": 3, "valid": 2, "test": 2}, length=8)
    for split in SPLITS:
        content[split] = {k: v.astype(np.float32) if k.startswith("src-") else v for k, v in content[split].items()}
    bundle = label_sequence_bundle(content, "in memory", "mosei-aligned", MOSEI_LABELS, ALIGNED_FIELDS)
    assert np.isneginf(content["train"]["src-audio"][0, -1, :3]).all()
    assert (bundle.splits["train"].features["audio"][0, -1, :3] == 0).all()


@pytest.mark.parametrize("per_sample,zip_container", [(True, True), (False, False), (True, False)])
def test_containers_and_per_sample_lists_give_the_same_data(tmp_path, aligned, per_sample, zip_container):
    _, content = aligned
    write_mosei_aligned(tmp_path / "train_valid_test.pt", content, per_sample=per_sample, zip_container=zip_container)
    got = load_dataset("mosei-aligned", tmp_path)
    want = load_dataset("mosei-aligned", aligned[0])
    for split in SPLITS:
        for m in want.spec.modality_names:
            assert torch.equal(got.splits[split].features[m], want.splits[split].features[m])
            assert torch.equal(got.splits[split].masks[m], want.splits[split].masks[m])
        assert torch.equal(got.splits[split].labels, want.splits[split].labels)


def test_label_names_come_from_the_files_vocabulary(tmp_path):
    content = mosei_aligned_content(sizes={"train": 3, "valid": 2, "test": 2}, length=8)
    content["dict"]["tgt"] = {"<s>": 2, "</s>": 3, "Joy": 4, "Sadness": 5, "Anger": 6, "Surprise": 7, "Disgust": 8, "Fear": 9}
    write_mosei_aligned(tmp_path / "train_valid_test.pt", content)
    assert load_dataset("mosei-aligned", tmp_path).spec.label_names == ("Joy", "Sadness", "Anger", "Surprise", "Disgust", "Fear")
    del content["dict"]
    write_mosei_aligned(tmp_path / "train_valid_test.pt", content)
    assert load_dataset("mosei-aligned", tmp_path).spec.label_names == MOSEI_LABELS  # documented order


def test_file_ids_are_used_when_present(tmp_path):
    content = mosei_aligned_content(sizes={"train": 3, "valid": 2, "test": 2}, length=8)
    content["train"]["id"] = ["vidA_1", "vidA_2", "vidB_0"]
    write_mosei_aligned(tmp_path / "x.pt", content)
    bundle = load_dataset("mosei-aligned", tmp_path, MoseiAlignedOptions(file="x.pt"))
    assert bundle.splits["train"].ids == ["vidA_1", "vidA_2", "vidB_0"] and bundle.splits["valid"].ids == ["valid-0", "valid-1"]


def broken(change):
    content = mosei_aligned_content(sizes={"train": 3, "valid": 2, "test": 2}, length=8)
    change(content)
    return content


def set_visual_nan(c):
    c["test"]["src-visual"][1, 4, 2] = np.nan


ERRORS = {
    "missing field": (lambda c: c["valid"].pop("src-audio"), r"split 'valid' has no field 'src-audio'"),
    "missing split": (lambda c: c.pop("test"), r"split 'test' is missing"),
    "wrong rank": (lambda c: c["train"].__setitem__("src-visual", np.zeros((3, 8))), r"'train', field 'src-visual' must be a numeric array \[N, L, D\]"),
    "sample count": (lambda c: c["train"].__setitem__("src-text", np.zeros((2, 8, 300))), r"field 'src-text' has 2 samples but 'tgt' has 3"),
    "lengths differ": (lambda c: c["train"].__setitem__("src-audio", np.ones((3, 9, 74))), r"must share one sequence length"),
    "ragged samples": (lambda c: c["train"].__setitem__("src-text", [np.ones((8, 300)), np.ones((7, 300)), np.ones((8, 300))]), r"field 'src-text': sample 1 is"),
    "nan features": (set_visual_nan, r"split 'test': features of modality 'visual' contain NaN"),
    "label out of range": (lambda c: c["train"]["tgt"].__setitem__(1, [2, 4, 10, 3]), r"field 'tgt': sample 1 has emotion id 10, outside 4..9"),
    "no end token": (lambda c: c["train"]["tgt"].__setitem__(0, [2, 5]), r"field 'tgt': sample 0 must start with <s>=2 and end with </s>=3"),
    "no start token": (lambda c: c["train"]["tgt"].__setitem__(2, [4, 5, 3]), r"field 'tgt': sample 2 must start with <s>=2 and end with </s>=3"),
    "+inf audio": (lambda c: c["valid"]["src-audio"].__setitem__((1, 6, 2), np.inf), r"split 'valid': features of modality 'audio' contain NaN/inf"),
    "empty split": (lambda c: c.__setitem__("valid", {k: ([] if k == "tgt" else v[:0]) for k, v in c["valid"].items()}), r"split 'valid' is empty"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_aligned_errors_name_file_field_and_problem(tmp_path, case):
    change, message = ERRORS[case]
    write_mosei_aligned(tmp_path / "bad.pt", broken(change))
    with pytest.raises(DataError, match=message) as err:
        load_dataset("mosei-aligned", tmp_path, MoseiAlignedOptions(file="bad.pt"))
    assert "bad.pt" in str(err.value)


def test_aligned_needs_root_and_file(tmp_path):
    with pytest.raises(DataError, match=r"'mosei-aligned' needs --root.*train_valid_test.pt"):
        load_dataset("mosei-aligned", None)
    with pytest.raises(DataError, match=r"train_valid_test.pt: file is missing"):
        load_dataset("mosei-aligned", tmp_path)
    (tmp_path / "train_valid_test.pt").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(DataError, match=r"train_valid_test.pt: corrupt or truncated"):
        load_dataset("mosei-aligned", tmp_path)


@pytest.fixture(scope="module")
def unaligned(tmp_path_factory, aligned):
    root = tmp_path_factory.mktemp("mosei_unaligned")
    (root / "train_valid_test.pt").write_bytes((aligned[0] / "train_valid_test.pt").read_bytes())
    content = write_mosei_unaligned(root / "mosei_senti_data_noalign.pkl")
    return root, content


def test_unaligned_features_with_labels_joined_by_index(unaligned, aligned):
    root, content = unaligned
    bundle = load_dataset("mosei-unaligned", root)
    assert [(m.name, m.dim, m.max_len) for m in bundle.spec.modalities] == [("text", 300, 50), ("visual", 35, 500), ("audio", 74, 500)]
    for split in SPLITS:
        data = bundle.splits[split]
        np.testing.assert_array_equal(data.labels.numpy(), multi_hot(aligned[1][split]["tgt"]))
        np.testing.assert_array_equal(data.features["visual"].numpy(), content[split]["vision"])
        for m, key in (("text", "text"), ("visual", "vision"), ("audio", "audio")):  # each modality its own padding
            np.testing.assert_array_equal(data.masks[m].numpy(), np.any(content[split][key] != 0, axis=2))
        assert data.ids == [f"video{split}{i}_{i}" for i in range(len(data))]
    audio = bundle.splits["train"].features["audio"]
    assert audio[0, -1, 0] == 0 and torch.isfinite(audio).all()
    ones = load_dataset("mosei-unaligned", root, MoseiUnalignedOptions(masks="ones")).splits["test"]
    assert ones.masks["visual"].shape == (4, 500) and ones.masks["visual"].all() and ones.masks["text"].all()


def test_unaligned_refuses_files_of_different_sizes(tmp_path, aligned):
    (tmp_path / "train_valid_test.pt").write_bytes((aligned[0] / "train_valid_test.pt").read_bytes())
    write_mosei_unaligned(tmp_path / "mosei_senti_data_noalign.pkl", sizes={"train": 6, "valid": 3, "test": 4})
    with pytest.raises(DataError, match=r"mosei_senti_data_noalign.pkl: split 'train', field 'text' has 6 samples but .*train_valid_test.pt has 7"):
        load_dataset("mosei-unaligned", tmp_path)


def test_unaligned_needs_both_files(tmp_path):
    write_mosei_unaligned(tmp_path / "mosei_senti_data_noalign.pkl")
    with pytest.raises(DataError, match=r"train_valid_test.pt: file is missing"):
        load_dataset("mosei-unaligned", tmp_path)


@pytest.mark.parametrize("dataset,fixture", [("mosei-aligned", "aligned"), ("mosei-unaligned", "unaligned")])
def test_cli_data_check(dataset, fixture, request, capsys):
    root = request.getfixturevalue(fixture)[0]
    assert main(["data", "check", "--dataset", dataset, "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "happy, sad, anger, surprise, disgust, fear" in out
