"""`mmer list` and the registries behind it."""

from __future__ import annotations

import pytest

from mmer.cli import main
from mmer.registry import DATASETS, Registry


def test_list_datasets_is_sorted_aligned_and_shows_summaries(capsys):
    assert main(["list", "datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(names) == DATASETS.names()
    assert {"synth-party", "synth-dyadic", "npz", "engine-toy"} <= set(names)
    width = max(map(len, names))
    assert all(line[width : width + 2] == "  " and line[width + 2] != " " for line in lines)  # one summary column
    assert "tiny learnable data for engine tests" in lines[names.index("engine-toy")]


def test_a_name_registered_twice_is_an_error_and_the_first_stays():
    registry: Registry[object] = Registry("widget", "mmer.commands")

    @registry.register("w", summary="first")
    def first() -> None: ...

    with pytest.raises(RuntimeError, match="widget 'w' registered twice"):
        registry.register("w", summary="second")(lambda: None)
    assert registry.get("w").summary == "first" and registry.get("w").obj is first


def test_summary_defaults_to_the_first_docstring_line():
    registry: Registry[object] = Registry("widget", "mmer.commands")

    @registry.register("doc")
    class Doc:
        """One line.

        More text."""

    assert registry.get("doc").summary == "One line."
    with pytest.raises(Exception, match=r"unknown widget 'dc' \(did you mean 'doc'\?\); valid: doc"):
        registry.get("dc")
