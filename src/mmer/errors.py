"""User-facing errors.

Anything a user can cause (bad file, bad flag, bad config key) raises `MMERError` with one readable sentence
that names the file/field/parameter, the problem and, where useful, the allowed values. The CLI prints it as
one line on stderr and exits non-zero; internal bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class MMERError(Exception):
    """An error caused by user input; its message is shown verbatim by the CLI."""


class DataError(MMERError):
    """A data file or directory is missing, corrupt, unsafe or inconsistent."""


class ConfigError(MMERError):
    """A configuration key, value or flag is invalid."""


class DivergenceError(MMERError):
    """Training produced a non-finite loss."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when `name` is close to one of `choices`, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """Message for an unknown registry/config name, listing what is valid."""
    choices = sorted(choices)
    return f"unknown {kind} '{name}'{did_you_mean(name, choices)}; valid: {', '.join(choices)}"


@contextmanager
def text_file_errors(path: str | Path) -> Iterator[None]:
    """Inside the block, a file that is not UTF-8 or not well-formed CSV is one DataError naming `path`."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
