"""User-facing errors.

Anything a user can cause (bad file, bad flag, bad config key) raises `MMERError` with one readable sentence
that names the file/field/parameter, the problem and, where useful, the allowed values. The CLI prints it as
one line on stderr and exits non-zero; internal bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
