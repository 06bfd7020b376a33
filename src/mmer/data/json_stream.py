"""Reading JSON data files with errors that name the file: whole documents, and one top-level object entry by
entry for feature files of several GB (MEmoR's text and audio features), where `json.load` would hold every
number as a Python float (about 8x the float32 size)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mmer.errors import DataError

CHUNK_CHARS = 1 << 24  # characters read per step by iter_json_object
_NUMBER_CHARS = "0123456789.eE+-"


def read_json(path: Path) -> Any:
    """The whole JSON document in `path`."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON document in `path`, which must be one object (a metadata or run file)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def iter_json_object(path: Path, chunk: int = CHUNK_CHARS) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of the top-level JSON object in `path`, in file order, holding at most one value and
    one chunk of text at a time. Anything but whitespace after the closing brace is an error, as for json.load."""
    try:
        with open(path, encoding="utf-8") as fh:
            reader = _ChunkReader(fh, chunk, path)
            reader.expect("{")
            if reader.peek() == "}":
                reader.expect_end()
                return
            while True:
                key = reader.value()
                if not isinstance(key, str):
                    raise DataError(f"{path}: not valid JSON (object keys must be strings, found {key!r})")
                reader.expect(":")
                yield key, reader.value()
                if reader.peek() == "}":
                    reader.expect_end()
                    return
                reader.expect(",")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


class _ChunkReader:
    """A window on a text file: `buf[pos:]` is what has been read and not yet consumed."""

    def __init__(self, fh: IO[str], chunk: int, path: Path):
        self.fh, self.chunk, self.path = fh, chunk, path
        self.decoder = json.JSONDecoder()
        self.buf, self.pos, self.eof = "", 0, False

    def _more(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at end of file."""
        if self.eof:
            return False
        data = self.fh.read(self.chunk)
        self.eof = not data
        self.buf, self.pos = self.buf[self.pos :] + data, 0
        return bool(data)

    def peek(self) -> str:
        """The next non-whitespace character, without consuming it ('' at end of file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        got = self.peek()
        if got != char:
            raise DataError(f"{self.path}: not valid JSON (expected {char!r}, found {got or 'end of file'!r})")
        self.pos += 1

    def expect_end(self) -> None:
        """Consume the closing brace; only whitespace may follow."""
        self.expect("}")
        rest = self.peek()
        if rest:
            raise DataError(f"{self.path}: not valid JSON (extra data after the closing '}}', found {rest!r})")

    def value(self) -> Any:
        """Decode one JSON value. A bare number may be cut by the end of the buffer and still decode ("12." gives
        12, "1e" gives 1), so a number followed only by number characters up to the end of the buffer is decoded
        again with more text unless the file has ended; a cut string, list, object or literal fails to decode
        and is retried the same way."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
                maybe_cut = type(value) in (int, float) and not self.buf[end:].strip(_NUMBER_CHARS)
                if not maybe_cut or self.eof:
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise DataError(f"{self.path}: not valid JSON ({exc})") from None
            self._more()
