"""The JSON readers of `mmer.data.json_stream`: the entry-by-entry object reader gives what json.load gives, for
every chunk size (values cut at any chunk boundary), and malformed files get one error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmer.data.json_stream import iter_json_object, read_json
from mmer.errors import DataError

DOCUMENT = (
    '{"clip_1+0": [0.5, -1.25e-3, 12345.678, 0],  "clip_1+1":[1,2,3]\n,\t"é+ü \\"q\\"": {"a": [true, false, null]},'
    '"n": -17, "s": "x,}:{y", "big": 1.5E+300 }\n  '
)


def write(tmp_path: Path, text: str, name: str = "features.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 16, 1 << 24])
def test_entries_equal_json_load_for_every_chunk_size(tmp_path, chunk):
    path = write(tmp_path, DOCUMENT)
    entries = list(iter_json_object(path, chunk=chunk))
    assert [key for key, _ in entries] == list(json.loads(DOCUMENT))  # file order
    assert dict(entries) == json.loads(DOCUMENT)
    assert read_json(path) == json.loads(DOCUMENT)


@pytest.mark.parametrize("number", ["123456789", "-1.25e-3", "12.5", "7E+2"])
def test_a_bare_number_cut_by_the_chunk_boundary_is_read_whole(tmp_path, number):
    """'12.5' cut after '12.' still decodes (as 12): the reader must read on before accepting it."""
    text = f'{{"k": {number}, "z": {number}}}'
    path = write(tmp_path, text)
    for chunk in range(1, len(text) + 1):
        assert list(iter_json_object(path, chunk=chunk)) == [("k", json.loads(number)), ("z", json.loads(number))], chunk


@pytest.mark.parametrize("text", ["{}", " { } \n", "{\n}"])
def test_empty_object_has_no_entries(tmp_path, text):
    assert list(iter_json_object(write(tmp_path, text), chunk=1)) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected '{', found 'end of file'"),
        ("[1, 2]", "expected '{', found '['"),
        ('{"a": [1, 2', "not valid JSON"),  # cut mid-value
        ('{"a": 1', "expected ',', found 'end of file'"),
        ('{"a" 1}', "expected ':', found '1'"),
        ('{"a": 1 "b": 2}', "expected ',', found '\"'"),
        ('{"a": 1} x', "extra data after the closing '}', found 'x'"),
        ("{} {}", "extra data after the closing '}', found '{'"),
        ('{1: 2}', "object keys must be strings"),
        ('{"a": nope}', "not valid JSON"),
    ],
)
def test_malformed_object_names_file_and_problem(tmp_path, text, problem):
    path = write(tmp_path, text)
    for chunk in (1, 4, 1 << 24):
        with pytest.raises(DataError) as info:
            list(iter_json_object(path, chunk=chunk))
        assert str(path) in str(info.value) and problem in str(info.value)


def test_bad_utf8_is_a_data_error(tmp_path):
    path = tmp_path / "features.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    for read in (read_json, lambda p: list(iter_json_object(p))):
        with pytest.raises(DataError, match="not valid JSON"):
            read(path)


def test_read_json_names_the_file(tmp_path):
    path = write(tmp_path, '{"a": }', name="data.json")
    with pytest.raises(DataError, match=r"data\.json: not valid JSON"):
        read_json(path)
