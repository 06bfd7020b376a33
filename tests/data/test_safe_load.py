import argparse
import collections
import os
import pickle

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.data.safe_load import float32_arrays, load_data_file, load_tensor_file
from mmer.errors import DataError


class Payload:
    """Unpickling this would create `marker` (through os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def sample_content():
    rng = np.random.default_rng(0)
    shared = np.ones((2, 3), dtype=np.float32)
    return {
        "train": {"src-text": rng.standard_normal((3, 4, 5)), "per-sample": [rng.standard_normal((4, 2)) for _ in range(3)], "tgt": [[2, 4, 3], [2, 3]]},
        "dict": {"tgt": {"<s>": 2, "happy": 4}},
        "settings": argparse.Namespace(max_len=60, name="mosei"),
        "scalar": np.float64(2.5),
        "ordered": collections.OrderedDict(a=np.arange(3)),
        "set": {1, 2},
        "frozen": frozenset([3]),
        "bytes": b"abc",
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "objects": np.array(["a", None], dtype=object),
        "strings": np.array(["ab", "c"]),
        "big": rng.standard_normal(4096),
        "shared": shared,
        "shared_again": shared,
    }


def assert_same(loaded, original, hooked=False):
    cast = (lambda a: a.astype(np.float32)) if hooked else (lambda a: a)
    np.testing.assert_array_equal(loaded["train"]["src-text"], cast(original["train"]["src-text"]))
    for got, want in zip(loaded["train"]["per-sample"], original["train"]["per-sample"]):
        np.testing.assert_array_equal(got, cast(want))
    assert loaded["train"]["tgt"] == original["train"]["tgt"] and loaded["dict"] == original["dict"]
    assert loaded["settings"] == original["settings"]
    assert loaded["scalar"] == 2.5 and loaded["set"] == {1, 2} and loaded["frozen"] == frozenset([3]) and loaded["bytes"] == b"abc"
    np.testing.assert_array_equal(loaded["ordered"]["a"], np.arange(3))
    np.testing.assert_array_equal(loaded["fortran"], cast(original["fortran"]))
    assert list(loaded["objects"]) == ["a", None] and list(loaded["strings"]) == ["ab", "c"]
    np.testing.assert_array_equal(loaded["big"], cast(original["big"]))
    assert loaded["shared"] is loaded["shared_again"]  # one array referenced twice stays one array
    assert loaded["big"].flags.writeable and loaded["train"]["src-text"].flags.writeable
    expected_float = np.float32 if hooked else np.float64
    assert loaded["train"]["src-text"].dtype == expected_float and loaded["big"].dtype == expected_float


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickles_of_every_protocol_round_trip(tmp_path, protocol):
    content = sample_content()
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    assert_same(load_data_file(path), content)
    assert_same(load_data_file(path, float32_arrays), content, hooked=True)


@pytest.mark.parametrize("zip_container", [True, False])
def test_torch_save_zip_and_legacy_containers_round_trip(tmp_path, zip_container):
    content = sample_content()
    path = tmp_path / "data.pt"
    torch.save(content, path, _use_new_zipfile_serialization=zip_container)
    assert_same(load_data_file(path), content)
    assert_same(load_data_file(path, float32_arrays), content, hooked=True)


def test_large_arrays_are_streamed_and_converted(tmp_path):
    # > 8 MB of UTF-8 text: decoded chunk by chunk into one buffer instead of a Python string
    array = np.random.default_rng(1).standard_normal((700, 60, 30))
    path = tmp_path / "big.pt"
    torch.save({"x": array, "y": array[:2].copy()}, path, _use_new_zipfile_serialization=False)
    loaded = load_data_file(path, float32_arrays)
    assert loaded["x"].dtype == np.float32 and loaded["x"].flags.writeable
    np.testing.assert_array_equal(loaded["x"], array.astype(np.float32))
    np.testing.assert_array_equal(loaded["y"], array[:2].astype(np.float32))


def test_long_text_that_is_not_array_data_stays_text(tmp_path):
    text = "MOSEI € ü " * 1_000_000  # 12 MB of UTF-8, characters beyond latin-1
    path = tmp_path / "text.pt"
    torch.save({"notes": text}, path, _use_new_zipfile_serialization=False)
    assert load_data_file(path)["notes"] == text


@pytest.mark.parametrize("with_tensor", [False, True])  # True: read by torch.load(weights_only=True)
def test_numpy_1x_module_names_load(tmp_path, with_tensor):
    array = np.arange(12.0).reshape(3, 4)
    path = tmp_path / "old.pt"
    extra = {"t": torch.ones(2)} if with_tensor else {}
    torch.save({**extra, "x": array, "s": np.float32(1.5)}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))  # as numpy 1.x writes
    loaded = load_data_file(path)
    np.testing.assert_array_equal(loaded["x"], array)
    assert loaded["s"] == np.float32(1.5)


@pytest.mark.parametrize("zip_container", [True, False])
def test_files_with_tensors_go_through_torch_weights_only_loader(tmp_path, zip_container):
    path = tmp_path / "tensors.pt"
    torch.save({"t": torch.arange(3.0), "a": np.zeros(2)}, path, _use_new_zipfile_serialization=zip_container)
    loaded = load_data_file(path)
    assert torch.equal(loaded["t"], torch.arange(3.0)) and loaded["a"].shape == (2,)
    torch.save(torch.ones(2, 5), tmp_path / "plain.pt")
    assert torch.equal(load_tensor_file(tmp_path / "plain.pt"), torch.ones(2, 5))


UNSAFE_WRITERS = {
    "pickle.pkl": lambda path, obj: path.write_bytes(pickle.dumps(obj, protocol=2)),
    "zip.pt": lambda path, obj: torch.save(obj, path),
    "legacy.pt": lambda path, obj: torch.save(obj, path, _use_new_zipfile_serialization=False),
    # a tensor first: the file is handed to torch.load(weights_only=True), which must refuse it too
    "tensor_first.pt": lambda path, obj: torch.save({"t": torch.ones(2), **obj}, path),
}


@pytest.mark.parametrize("name", sorted(UNSAFE_WRITERS))
def test_code_running_payloads_are_refused_without_running(tmp_path, name):
    marker = tmp_path / "marker"
    path = tmp_path / name
    UNSAFE_WRITERS[name](path, {"x": np.zeros(3), "payload": Payload(marker)})
    with pytest.raises(DataError) as err:
        load_data_file(path)
    message = str(err.value)
    assert "unsafe" in message and name in message and "system" in message
    assert not marker.exists()


def test_unsafe_tensor_file_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "clip.pt"
    torch.save({"t": torch.ones(2), "payload": Payload(marker)}, path)
    with pytest.raises(DataError, match="unsafe.*system"):
        load_tensor_file(path)
    assert not marker.exists()


def test_setting_attributes_of_an_allowed_class_is_refused(tmp_path):
    # BUILD on the class argparse.Namespace itself (would change it for the whole process)
    path = tmp_path / "patch.pkl"
    path.write_bytes(b"\x80\x02cargparse\nNamespace\nN}X\x03\x00\x00\x00fooK\x01s\x86b.")
    with pytest.raises(DataError, match="unsafe.*argparse.Namespace"):
        load_data_file(path)
    assert not hasattr(argparse.Namespace, "foo")


@pytest.mark.parametrize("kind", ["pkl", "zip", "legacy"])
def test_truncated_files_give_a_clear_error(tmp_path, kind):
    content = {"x": np.random.default_rng(0).standard_normal((50, 20)), "y": [1, 2]}
    path = tmp_path / f"data.{kind}"
    if kind == "pkl":
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path, _use_new_zipfile_serialization=kind == "zip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"data.{kind}: corrupt or truncated"):
        load_data_file(path)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="junk.pt: corrupt or truncated"):
        load_data_file(tmp_path / "junk.pt")
    with pytest.raises(DataError, match="absent.pkl: file is missing"):
        load_data_file(tmp_path / "absent.pkl")


def test_cli_data_check_refuses_an_unsafe_file(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"train": {"payload": Payload(marker)}}, tmp_path / "train_valid_test.pt", _use_new_zipfile_serialization=False)
    code = main(["data", "check", "--dataset", "mosei-aligned", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "unsafe" in err and "train_valid_test.pt" in err and "system" in err
    assert not marker.exists()


def test_float32_hook_leaves_integer_and_bool_arrays_alone(tmp_path):
    """Only floating arrays become float32: integer token ids and lengths (e.g. tgt, len_list) must stay integers."""
    path = tmp_path / "mixed.pkl"
    path.write_bytes(pickle.dumps({"ids": np.array([2, 4, 3]), "flags": np.array([True, False]), "x": np.ones(3)}, protocol=2))
    loaded = load_data_file(path, float32_arrays)
    assert loaded["ids"].dtype == np.int64 and loaded["flags"].dtype == np.bool_ and loaded["x"].dtype == np.float32


@pytest.mark.parametrize("name", ["getattr", "eval", "exec", "__import__", "open", "setattr"])
def test_only_the_documented_builtins_are_allowed(tmp_path, name):
    """builtins is allowed for set/frozenset/bytes/bytearray only; any other builtin could be used to run code."""
    path = tmp_path / "global.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\n" + name.encode() + b"\n.")
    with pytest.raises(DataError, match=rf"unsafe.*'builtins.{name}'"):
        load_data_file(path)
