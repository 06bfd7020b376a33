"""Fixtures the model tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from lightning_fabric import Fabric


@pytest.fixture(scope="module")
def fabric() -> Fabric:
    """The CPU Fabric a training step runs under."""
    return Fabric(accelerator="cpu", devices=1)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: on a busy 2-core machine a second intra-op thread costs far more than it saves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
