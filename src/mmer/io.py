"""Atomic file writes: nothing is half-written, and nothing existing is replaced unless asked."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, IO

from mmer.errors import MMERError


def make_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder `path` (and its parents); a clear error if a file is in the way."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise MMERError(f"output folder {path}: {part} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def refuse_foreign_outputs(out: Path, names: Iterable[str], earlier_output: bool, what: str) -> None:
    """A command that rewrites fixed file names in `out` may replace them only when `out` holds an earlier output of
    that command (`earlier_output`); a user's file of the same name is never overwritten."""
    clash = sorted(n for n in names if (out / n).exists())
    if clash and not earlier_output:
        raise MMERError(f"{out}: {', '.join(clash)} exist(s) and are not an earlier {what}; choose another --out")


@functools.cache
def _file_mode() -> int:
    """What `open()` would give a new file: 0o666 less the process umask (mkstemp's files are 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _flush_to_disk(path: str) -> None:
    """Make the contents durable before the rename, so a crash never leaves `path` renamed but empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it becomes `path` in one step: a rename, or, without
    `overwrite`, a hard link that fails if `path` appeared in the meantime."""
    path = Path(path)
    if path.is_dir():
        raise MMERError(f"{path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise MMERError(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _file_mode())
    try:
        yield Path(tmp)
        _flush_to_disk(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise MMERError(f"{path} already exists; refusing to overwrite it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike[str], writer: Callable[[IO[Any]], None], mode: str = "w", overwrite: bool = True) -> None:
    with atomic_path(path, overwrite) as tmp, open(tmp, mode) as fh:
        writer(fh)


def write_text(path: str | os.PathLike[str], text: str, overwrite: bool = True) -> None:
    write_atomic(path, lambda fh: fh.write(text), overwrite=overwrite)


def write_json(path: str | os.PathLike[str], obj: Any, overwrite: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite=overwrite)
