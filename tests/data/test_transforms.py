import torch

from mmer.data.batch import Batch
from mmer.data.transforms import drop_at_rate, drop_modalities
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
