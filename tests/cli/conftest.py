"""Shared fixtures for the CLI tests: one tiny trained run (baseline, engine-toy, 1 epoch), read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmer.cli import main
from tests.engine import toy_data  # noqa: F401  (registers the `engine-toy` dataset)

TRAIN = ["train", "--model", "baseline", "--dataset", "engine-toy", "--quiet", "--set", "data.batch_size=16", "--set", "train.lr=3e-3"]


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A complete run directory. Tests must not write into it (copy it or use --out elsewhere)."""
    out = tmp_path_factory.mktemp("cli-runs") / "baseline"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    return out


class FitRecorder:
    """Replaces the trainer's `fit` so flag handling can be checked without training; records every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from mmer.engine import trainer

        self.calls: list[tuple[object, Path, dict]] = []
        monkeypatch.setattr(trainer, "fit", self)

    def __call__(self, cfg, out, **kwargs):
        self.calls.append((cfg, Path(out), kwargs))
        return {}
