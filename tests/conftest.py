"""Shared fixtures: the tiny synthetic benchmark, for any test that needs realistic data in well under a second.

`tiny_party` (multi-party, 9 labels, personality, missing modalities) and `tiny_dyadic` (single speaker, 6 labels,
sequences) are generated once per session by the registered readers (size "tiny", the presets' default seeds).
Treat them as read-only: their tensors are shared with every other test.
"""

from __future__ import annotations

import pytest

from mmer.data.dataset import DatasetBundle
from mmer.data.load import load_dataset
from mmer.data.readers.synthetic import SynthDyadicOptions, SynthPartyOptions


@pytest.fixture(scope="session")
def tiny_party() -> DatasetBundle:
    return load_dataset("synth-party", options=SynthPartyOptions(size="tiny"))


@pytest.fixture(scope="session")
def tiny_dyadic() -> DatasetBundle:
    return load_dataset("synth-dyadic", options=SynthDyadicOptions(size="tiny"))
