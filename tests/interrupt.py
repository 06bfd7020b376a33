"""Simulate a run cut off after its first epoch (Ctrl-C), for the resume-equals-uninterrupted tests."""

from __future__ import annotations

import pytest

from mmer.engine import trainer


def interrupt_after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next `fit` raises KeyboardInterrupt right after epoch 1 (last.pt written); later calls run normally."""
    calls = {"n": 0}
    original = trainer._Fit._should_stop

    def should_stop(self, state):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return original(self, state)

    monkeypatch.setattr(trainer._Fit, "_should_stop", should_stop)
