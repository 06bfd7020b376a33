"""A sample's prediction does not depend on the other samples of its evaluation batch, so `data.eval_batch_size`
(and the batch size of `mmer predict`) changes speed only: no model uses batch statistics, queues or shuffles in
eval mode."""

from __future__ import annotations

import pytest
import torch

from mmer import config as cfglib
from mmer.engine.trainer import build_model

MODELS = ("ramer", "carat", "tailor", "amp", "baseline")


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("dataset", ["synth-party", "synth-dyadic"])
def test_predictions_are_the_same_in_any_batch(model_name, dataset, tiny_party, tiny_dyadic):
    bundle = tiny_party if dataset == "synth-party" else tiny_dyadic
    torch.manual_seed(0)
    model = build_model(cfglib.resolve(model_name, dataset), bundle.spec).eval()
    split = bundle.splits["test"]
    n = min(9, len(split))
    batch = split.batch(torch.arange(n))
    reordered = split.batch(torch.arange(n).flip(0))
    with torch.no_grad():
        whole = model.predict_proba(batch)  # [n, C]
        in_threes = torch.cat([model.predict_proba(chunk) for chunk in batch.chunks(3)])
        alone = model.predict_proba(batch.chunks(1)[4])
        flipped = model.predict_proba(reordered).flip(0)
    torch.testing.assert_close(in_threes, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone[0], whole[4], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(flipped, whole, rtol=1e-4, atol=1e-5)
