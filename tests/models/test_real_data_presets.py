"""The real-data presets (docs/real_data.md, "Presets") are the synthetic presets' networks and training values,
with only the documented differences, so the real-data table compares the same networks as the synthetic one."""

from __future__ import annotations

import pytest

from mmer import config as cfglib
from mmer.registry import MODELS
from tests.models.helpers import MIRRORS

GRADIENT_MODELS = ("ramer", "carat", "tailor", "amp", "baseline")


@pytest.mark.parametrize("model", GRADIENT_MODELS)
@pytest.mark.parametrize("dataset", sorted(MIRRORS))
def test_a_real_data_preset_mirrors_its_synthetic_preset(model, dataset):
    assert model in MODELS.names()
    path = cfglib.preset_path(model, dataset)
    assert path is not None and path.read_text().startswith(f"# {model} on ")
    real, synthetic = cfglib.resolve(model, dataset), cfglib.resolve(model, MIRRORS[dataset])
    if (model, dataset) == ("tailor", "mosei-text"):  # visual/audio are declared with length 1: CTC lines them up
        assert real.model.ctc and real.model.ctc_reference == "text"
        real.model.ctc = synthetic.model.ctc
    if (model, dataset) == ("tailor", "meld"):  # MELD has no personality traits
        assert not real.model.personality
        real.model.personality = synthetic.model.personality
    assert real.model == synthetic.model
    assert real.train == synthetic.train
    expected_batch = 16 if dataset == "music-emotions" else synthetic.data.batch_size  # 355 songs: 22 steps per epoch
    assert real.data.batch_size == expected_batch
    if dataset == "meld":
        assert real.data.options.layout == "utterance"
