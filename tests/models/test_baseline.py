"""The late-fusion `baseline`: what it pools (docs/models/baselines.md) and that padding never reaches it."""

from __future__ import annotations

import torch

from mmer import config as cfglib
from mmer.data.load import load_dataset
from mmer.data.readers.synthetic import SynthPartyOptions
from mmer.engine.trainer import build_model
from tests.engine import toy_data


def _model(dataset: str, bundle, **options):
    overrides = [f"model.{k}={v}" for k, v in options.items()]
    torch.manual_seed(0)
    return build_model(cfglib.resolve("baseline", dataset, overrides=overrides), bundle.spec).eval()


def test_padding_does_not_change_predictions():
    bundle = toy_data.load(None, None)
    batch = bundle.splits["test"].batch(torch.arange(16))
    model = _model("engine-toy", bundle)
    noisy = batch.replace(features={m: torch.where(batch.masks[m][..., None], x, 50 * torch.randn_like(x)) for m, x in batch.features.items()})
    assert any((~batch.masks[m]).any() for m in batch.masks)  # there is padding to fill
    torch.testing.assert_close(model.predict_proba(noisy), model.predict_proba(batch))


def test_multi_party_pools_the_clip_and_the_target_token_separately():
    """Per modality the head reads [clip mean (d), target-token mean (d), presence flag]: a listener without text
    gets zeros in its text target slot while the clip's text (the speakers') still fills the clip slot."""
    bundle = load_dataset("synth-party", options=SynthPartyOptions(size="tiny"))
    batch = bundle.splits["train"].batch(torch.arange(len(bundle.splits["train"])))
    model = _model("synth-party", bundle)
    captured = []
    model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    model.predict_proba(batch)
    d = model.cfg.d_model
    head_input = captured[0].view(batch.size, len(batch.features), 2 * d + 1)  # [B, M, 2d + 1]
    for i, m in enumerate(batch.features):
        mask = batch.masks[m]  # [B, T]
        target_has = (mask & batch.party.target).any(dim=1)  # [B]
        clip, target, flag = head_input[:, i, :d], head_input[:, i, d : 2 * d], head_input[:, i, 2 * d]
        assert torch.equal(flag, mask.any(dim=1).float())
        without = mask.any(dim=1) & ~target_has  # the clip has m, the target token does not
        if m == "text":
            assert without.any()  # listeners: there is a case to check
        assert not target[without].any() and clip[without].abs().sum(dim=1).gt(0).all()
        several = target_has & (mask.sum(dim=1) > 1)
        assert not torch.allclose(target[several], clip[several])
