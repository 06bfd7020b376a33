"""Atomic file writes: nothing is half-written, and nothing existing is replaced unless asked."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, IO

from mmer.errors import MMERError


@contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MMERError(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
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
