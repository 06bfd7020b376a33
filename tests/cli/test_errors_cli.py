"""Every error a user causes is one line on stderr (`<prog>: error: ...`), also argparse's own and PyYAML's, and
output cut short by the reader (`mmer ... | head`) ends quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmer.cli import main


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "--model", "baseline"], "mmer train: error: the following arguments are required: --out (see `mmer train --help`)"),
        (["evaluate", "--run", "r", "--missing-rate", "abc"], "mmer evaluate: error: argument --missing-rate: invalid float value: 'abc' (see `mmer evaluate --help`)"),
        (["nosuch"], "mmer: error: argument COMMAND: invalid choice: 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, line):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith(line) and err.count("\n") == 1


def test_invalid_yaml_is_one_line_with_its_position(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: [1, 2\n  x: : y\n")
    assert main(["config", "show", "--model", "baseline", "--dataset", "synth-dyadic", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"mmer: error: config file {path} is not valid YAML: expected ',' or ']', but got ':', line 3 column 4\n"


def test_a_closed_stdout_ends_quietly():
    """The reader has gone before mmer writes: no BrokenPipeError traceback, exit 141 (128 + SIGPIPE) as in a shell."""
    proc = subprocess.Popen([sys.executable, "-m", "mmer", "list", "datasets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the child has imported mmer and printed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b""
