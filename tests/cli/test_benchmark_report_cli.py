"""`mmer benchmark` flag parsing (no training) and `mmer report`'s argument checks."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mmer.cli import build_parser, main
from mmer.commands.benchmark import canonical_command, parse_pairs, parse_roots, parse_seeds
from mmer.errors import ConfigError


def parse(argv: list[str]) -> dict:
    args = vars(build_parser().parse_args(argv))
    args.pop("func")
    return args


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--epochs", "2", "--set", "train.lr=1e-3", "--set", "model.d_model=8 ", "--root", "npz=/data/my corpus"],
        ["--ablations", "a.yaml", "--compare", "br,baseline", "--missing-matrix", "--missing-repeats", "3", "--table-style", "memor"],
        ["--missing-matrix"],
    ],
)
def test_the_quoted_command_reproduces_the_benchmark(extra):
    """summary.md quotes the command: run again, it must give the very same settings."""
    argv = ["benchmark", "--models", "br,baseline", "--datasets", "engine-toy,npz", "--seeds", "1,2", "--out", "b", *extra]
    args = build_parser().parse_args(argv)
    command = canonical_command(args)
    assert command.startswith("mmer benchmark --models br,baseline")
    again = parse(shlex.split(command)[1:])
    assert again == parse(argv)


def test_roots_seeds_and_pairs_are_checked():
    assert parse_roots(["npz=rel/dir"]) == {"npz": str(Path("rel/dir").resolve())}
    for bad in ("npz", "npz=", "=dir"):
        with pytest.raises(ConfigError, match=rf"--root expects DATASET=DIR, got '{bad}'"):
            parse_roots([bad])
    assert parse_seeds(" 3, 1,") == [3, 1]
    with pytest.raises(ConfigError, match="--seeds needs at least one value"):
        parse_seeds(" , ")
    assert parse_pairs(["a, b"]) == [("a", "b")]
    for bad in ("a,a", "a", "a,b,c"):
        with pytest.raises(ConfigError, match="--compare expects two different names A,B"):
            parse_pairs([bad])


def test_report_refuses_too_few_tsne_samples_before_loading_the_run(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "fig"), "--tsne-samples", "9"]) == 2
    assert "--tsne-samples must be >= 10, got 9" in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()
