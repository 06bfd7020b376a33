import pytest
import torch

from mmer.data.batch import Batch
from mmer.data.transforms import drop_at_rate, drop_modalities
from mmer.errors import ConfigError
from tests.engine.toy_data import make_split


def test_drop_modalities_zeroes_features_and_masks_only_for_named():
    batch = make_split(8, 0).batch(torch.arange(8))
    out = drop_modalities(batch, ["audio"])
    assert not out.masks["audio"].any() and torch.count_nonzero(out.features["audio"]) == 0
    assert torch.equal(out.features["text"], batch.features["text"]) and batch.masks["audio"].any()


def test_drop_at_rate_is_seeded_and_keeps_one_modality():
    batch = make_split(200, 0).batch(torch.arange(200))
    a = drop_at_rate(batch, 0.9, torch.Generator().manual_seed(1))
    b = drop_at_rate(batch, 0.9, torch.Generator().manual_seed(1))
    assert all(torch.equal(a.masks[m], b.masks[m]) for m in a.masks)
    present = a.present()
    assert present.any(dim=1).all()  # never every modality gone
    assert 0.3 < (~present).float().mean() < 0.6  # most second modalities dropped at 0.9
    assert drop_at_rate(batch, 0.0, torch.Generator().manual_seed(1)).present().all()
    for j, m in enumerate(a.modalities):  # a dropped modality is zeros (a model that ignores masks sees nothing)
        dropped = ~present[:, j]
        assert dropped.any() and not a.features[m][dropped].any() and not a.masks[m][dropped].any()
        assert torch.equal(a.features[m][~dropped], batch.features[m][~dropped])


def test_a_modality_with_leading_padding_is_present():
    """MOSEI pads at the front: a sample whose first steps are padding still has the modality."""
    batch = Batch(
        features={"text": torch.ones(2, 3, 4), "audio": torch.ones(2, 3, 2)},
        masks={"text": torch.tensor([[False, True, True], [False, False, False]]), "audio": torch.tensor([[False, False, True], [True, False, False]])},
        labels=torch.zeros(2, 1),
        ids=["a", "b"],
        index=torch.arange(2),
    )
    assert batch.present().tolist() == [[True, True], [False, True]]


# ----------------------------------------------------------------------------------------------- round 5


def _three_modalities(n: int, absent: dict[str, slice]) -> Batch:
    """n samples, modalities t/a/v of 2 steps, all present except the `absent` rows (mask False, zeros)."""
    features, masks = {}, {}
    for name in ("t", "a", "v"):
        mask = torch.ones(n, 2, dtype=torch.bool)
        if name in absent:
            mask[absent[name]] = False
        features[name] = torch.ones(n, 2, 3) * mask[..., None]
        masks[name] = mask
    return Batch(features=features, masks=masks, labels=torch.zeros(n, 1), ids=[str(i) for i in range(n)], index=torch.arange(n))


def test_drop_modalities_refuses_an_unknown_name():
    batch = make_split(4, 0).batch(torch.arange(4))
    with pytest.raises(ConfigError, match=r"unknown modality to drop 'video'; valid: audio, text"):
        drop_modalities(batch, ["video"])


def test_the_rescued_modality_is_one_the_sample_has():
    """A sample that lacks a modality in the data never gets it back as its 'kept' one (it would have no token)."""
    batch = _three_modalities(300, {"t": slice(0, 200), "a": slice(100, 300)})  # rows 0-99: a, v; 100-199: v; 200-299: t, v
    for seed in range(5):
        out = drop_at_rate(batch, 0.95, torch.Generator().manual_seed(seed))
        present = out.present()
        assert present.sum(dim=1).eq(1).float().mean() > 0.8  # at 0.95 nearly every sample is down to its rescue
        assert present.any(dim=1).all() and not (present & ~batch.present()).any()


def test_the_rescued_modality_is_chosen_uniformly():
    batch = _three_modalities(3000, {})
    present = drop_at_rate(batch, 0.99, torch.Generator().manual_seed(0)).present()
    share = present.float().mean(dim=0)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.04), share


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_a_rate_outside_0_1_is_refused(rate):
    batch = make_split(4, 0).batch(torch.arange(4))
    with pytest.raises(ConfigError, match=rf"missing rate must be in \[0, 1\), got {rate}"):
        drop_at_rate(batch, rate, torch.Generator().manual_seed(0))
