import json
import shutil

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.data.load import load_dataset
from mmer.data.readers.memor import EMOTIONS, MEmoROptions
from mmer.errors import DataError
from tests.data.official_files import FPS, write_memor

CLIP = "s01e01_c01"  # persons sheldon (0), leonard (1), penny (4); 2 segments -> 6 tokens


@pytest.fixture(scope="module")
def memor(tmp_path_factory):
    root = tmp_path_factory.mktemp("memor") / "MEmoR"
    return root, write_memor(root)


@pytest.fixture(scope="module")
def primary(memor):
    return load_dataset("memor-primary", memor[0])


def locate(bundle, clip):
    """(split data, clip row, sample indices) of a clip, whichever split it fell in."""
    for split in bundle.splits.values():
        samples = [i for i, sample_id in enumerate(split.ids) if sample_id.split("#")[0] == clip]
        if samples:
            return split, int(split.clip_index[samples[0]]), samples
    raise AssertionError(clip)


def test_tokens_follow_person_major_order_with_character_ids(primary):
    split, row, _ = locate(primary, CLIP)
    assert split.person[row, :6].tolist() == [0, 0, 1, 1, 4, 4]
    assert split.segment[row, :6].tolist() == [0, 1, 0, 1, 0, 1]
    assert (split.person[row, 6:] == -1).all()
    assert primary.spec.multi_party and primary.spec.personality_dim == 118
    assert [(m.name, m.dim) for m in primary.spec.modalities] == [("text", 1024), ("visual", 4302), ("audio", 6373)]


def test_text_and_audio_only_on_the_speakers_token(primary, memor):
    split, row, _ = locate(primary, CLIP)
    written = memor[1]
    # segment 0 is spoken by sheldon (token 0), segment 1 by penny (token 5); penny's audio (seg_ori_ind 4) is missing
    assert split.masks["text"][row, :6].tolist() == [True, False, False, False, False, True]
    assert split.masks["audio"][row, :6].tolist() == [True, False, False, False, False, False]
    np.testing.assert_allclose(split.features["text"][row, 0].numpy(), written["text"][f"{CLIP}+0"], rtol=1e-6)
    np.testing.assert_allclose(split.features["text"][row, 5].numpy(), written["text"][f"{CLIP}+1"], rtol=1e-6)
    np.testing.assert_allclose(split.features["audio"][row, 0].numpy(), written["audio"][f"{CLIP}+3"], rtol=1e-6)
    silent = ~split.masks["text"][row]
    assert (split.features["text"][row][silent] == 0).all() and (split.features["audio"][row, 1:] == 0).all()


def test_visual_is_mean_face_object_and_environment_when_enough_faces(primary, memor):
    split, row, _ = locate(primary, CLIP)
    tensors = memor[1]["tensors"][CLIP]
    assert split.masks["visual"][row, :6].tolist() == [True, False, False, False, False, True]  # penny has 3 crops in segment 0
    seg0 = (0, int(1.5 * FPS))  # frames of segment 0: 0..35
    want = torch.cat([tensors["face_features"][:12].mean(0), tensors["object_features"][seg0[0]:seg0[1]].mean(0),
                      tensors["environment_features"][seg0[0]:seg0[1]].mean(0)])
    torch.testing.assert_close(split.features["visual"][row, 0], want)
    seg1 = (int(1.5 * FPS), int(3.0 * FPS))
    want = torch.cat([tensors["face_features"][12:24].mean(0), tensors["object_features"][seg1[0]:seg1[1]].mean(0),
                      tensors["environment_features"][seg1[0]:seg1[1]].mean(0)])
    torch.testing.assert_close(split.features["visual"][row, 5], want)
    few, few_row, _ = locate(primary, "s01e01_c02")  # only 5 face crops in the whole clip
    assert not few.masks["visual"][few_row].any()


def test_personality_is_normalised_across_characters_per_trait(primary, memor):
    split, row, _ = locate(primary, CLIP)
    table = memor[1]["personality"]
    normalised = table / np.linalg.norm(table, axis=0, keepdims=True)
    np.testing.assert_allclose(split.personality[row, :6].numpy(), normalised[[0, 0, 1, 1, 4, 4]], rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=0), 1.0)
    assert (split.personality[row, 6:] == 0).all()


def test_annotation_samples_target_the_persons_segment(primary):
    split, row, samples = locate(primary, CLIP)
    assert [split.ids[i] for i in samples] == [f"{CLIP}#0", f"{CLIP}#1", f"{CLIP}#2"]
    assert all(int(split.clip_index[i]) == row for i in samples)  # three samples share one stored clip
    expected = {0: ("joy", 5), 1: ("anger", 2), 2: ("neutral", 1)}  # #1: leonard is annotated but not on screen
    for i, (emotion, token) in zip(samples, expected.values()):  # #2: moment after the last segment -> nearest
        assert split.labels[i].tolist() == [float(e == emotion) for e in EMOTIONS[:9]]
        assert split.target[i].nonzero().flatten().tolist() == [token]


def test_clip_samples_take_the_union_and_all_targets(memor):
    bundle = load_dataset("memor-primary", memor[0], MEmoROptions(samples="clip"))
    split, row, samples = locate(bundle, CLIP)
    assert len(samples) == 1 and split.ids[samples[0]] == CLIP
    assert {EMOTIONS[j] for j in split.labels[samples[0]].nonzero().flatten().tolist()} == {"joy", "anger", "neutral"}
    assert split.target[samples[0]].nonzero().flatten().tolist() == [1, 2, 5]
    assert sum(len(s) for s in bundle.splits.values()) == 10  # one sample per clip


def test_fine_grained_uses_all_14_emotions(memor):
    bundle = load_dataset("memor-fine", memor[0])
    assert bundle.spec.label_names == EMOTIONS and len(EMOTIONS) == 14
    split, _, samples = locate(bundle, CLIP)
    assert EMOTIONS[int(split.labels[samples[0]].argmax())] == "serenity"


def test_validation_is_carved_from_training_clips_with_a_fixed_seed(memor, primary):
    annotations = memor[1]["annotations"]
    train_clips = list(dict.fromkeys(a["clip"] for a in annotations[:10]))  # first appearance order
    order = np.arange(len(train_clips))
    np.random.RandomState(2020).shuffle(order)
    clip_of = lambda split: {i.split("#")[0] for i in primary.splits[split].ids}
    assert clip_of("valid") == {train_clips[order[0]]}  # int(8 clips x 0.2) = 1 clip
    assert clip_of("train") == set(train_clips) - clip_of("valid")
    assert clip_of("test") == {a["clip"] for a in annotations[10:]}
    other = load_dataset("memor-primary", memor[0], MEmoROptions(valid_fraction=0.5, split_seed=7))
    assert len({i.split("#")[0] for i in other.splits["valid"].ids}) == 4


def test_text_key_convention_option(tmp_path, memor):
    root = tmp_path / "MEmoR"
    shutil.copytree(memor[0], root)
    data = json.loads((root / "data.json").read_text())
    text = json.loads((root / "features" / "text_features.json").read_text())
    by_original = {}
    for key, value in text.items():
        clip, index = key.rsplit("+", 1)
        by_original[f"{clip}+{data[clip]['seg_ori_ind'][int(index)]}"] = value
    (root / "features" / "text_features.json").write_text(json.dumps(by_original))
    with pytest.raises(DataError, match=r"text_features.json: no feature '.*\(option text_key='segment'"):
        load_dataset("memor-primary", root)
    bundle = load_dataset("memor-primary", root, MEmoROptions(text_key="original"))
    split, row, _ = locate(bundle, CLIP)
    np.testing.assert_allclose(split.features["text"][row, 5].numpy(), text[f"{CLIP}+1"], rtol=1e-6)


def edit_json(root, name, change):
    path = root / name
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


ERRORS = {
    "unknown emotion": (lambda r: edit_json(r, "anno.json", lambda c: c["primary"][3].__setitem__("emotion", "serenity")),
                        r"anno.json: primary\[3\]: field 'emotion' is 'serenity', not one of neutral"),
    "bad character": (lambda r: edit_json(r, "anno.json", lambda c: c["primary"][0].__setitem__("character", 9)),
                      r"anno.json: primary\[0\]: field 'character' must be an index 0..7"),
    "id out of range": (lambda r: (r / "test_id.txt").write_text("10\n12\n"), r"test_id.txt: line 2: annotation index 12 is outside 0..11"),
    "unknown clip": (lambda r: edit_json(r, "data.json", lambda c: c.pop("s01e01_c02")), r"data.json: has no clip 's01e01_c02'"),
    "segment lists": (lambda r: edit_json(r, "data.json", lambda c: c[CLIP]["speakers"].pop()), rf"data.json: clip '{CLIP}': field 'speakers' must be a list of 2 entries"),
    "personality rows": (lambda r: (r / "features" / "character_features.csv").write_text("1,2\n3,4\n"), r"character_features.csv: expected 8 rows"),
    "audio dim": (lambda r: edit_json(r, "features/audio_features.json", lambda c: c.__setitem__(f"{CLIP}+3", [1.0, 2.0])),
                  rf"audio_features.json: entry '{CLIP}\+3' must be 6373 finite numbers, got shape \(2,\)"),
    "truncated json": (lambda r: (r / "features" / "text_features.json").write_text('{"a+0": [1.0, 2'), r"text_features.json: not valid JSON"),
    "face tensor": (lambda r: torch.save(torch.zeros(3, 1024), r / "features/visual_features/face_features" / f"{CLIP}.pt"),
                    rf"face_features/{CLIP}.pt: expected a float tensor \[27, 1024\], got \(3, 1024\)"),
    "missing names": (lambda r: (r / "features/visual_features/face_names" / f"{CLIP}.txt").unlink(), rf"face_names/{CLIP}.txt: file is missing"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_file_field_and_problem(tmp_path, memor, case):
    root = tmp_path / "MEmoR"
    shutil.copytree(memor[0], root)
    change, message = ERRORS[case]
    change(root)
    with pytest.raises(DataError, match=message):
        load_dataset("memor-primary", root)


def test_needs_root_and_a_sane_validation_share(tmp_path, memor):
    with pytest.raises(DataError, match=r"'memor-primary' needs --root: a folder that holds anno.json"):
        load_dataset("memor-primary", None)
    with pytest.raises(DataError, match=r"anno.json: file is missing"):
        load_dataset("memor-fine", tmp_path)
    with pytest.raises(DataError, match=r"valid_fraction 0.05 of 8 training clips leaves an empty"):
        load_dataset("memor-primary", memor[0], MEmoROptions(valid_fraction=0.05))


@pytest.mark.parametrize("dataset", ["memor-primary", "memor-fine"])
def test_cli_data_check(memor, dataset, capsys):
    assert main(["data", "check", "--dataset", dataset, "--root", str(memor[0])]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "personality dim 118" in out
