"""Baseline contracts the model tests did not pin down (docs/models/baselines.md): the late-fusion baseline uses
the personality and learns its target embedding on multi-party data and stays finite with a modality absent;
the classic models keep the chain's internal 0.5 whatever `model.threshold` is, give constant labels their
training frequency, handle a two-set label powerset, and reload from their checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mmer import config as cfglib
from mmer.data.batch import Batch
from mmer.data.dataset import DatasetBundle, SplitData
from mmer.data.loader import eval_batches
from mmer.data.pooling import pooled_features
from mmer.engine.trainer import build_model
from mmer.models.base import MMERModel
from tests.engine import toy_data

# ------------------------------------------------------------------------------------------ late fusion


def _baseline(dataset: str, bundle: DatasetBundle) -> MMERModel:
    torch.manual_seed(0)
    return build_model(cfglib.resolve("baseline", dataset), bundle.spec)


def _party_batch(bundle: DatasetBundle) -> Batch:
    return bundle.splits["train"].batch(torch.arange(8))


def test_baseline_prediction_depends_on_the_personality(tiny_party: DatasetBundle) -> None:
    """Multi-party data: every token gets its person's personality (projected), so other traits give other
    probabilities."""
    model = _baseline("synth-party", tiny_party).eval()
    batch = _party_batch(tiny_party)
    assert batch.personality is not None
    other = batch.replace(personality=batch.personality.flip(0))
    assert not torch.allclose(model.predict_proba(batch), model.predict_proba(other))


def test_baseline_target_embedding_is_trained(tiny_party: DatasetBundle) -> None:
    """The learned target embedding starts at zero; it is added on the target token(s), so the BCE reaches it."""
    model = _baseline("synth-party", tiny_party).train()
    model(_party_batch(tiny_party)).losses["bce"].backward()
    assert model.target_embedding.grad is not None and model.target_embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("dataset", ["synth-party", "synth-dyadic"])
def test_baseline_absent_modality_pools_to_zero_with_flag_zero(dataset: str, tiny_party: DatasetBundle, tiny_dyadic: DatasetBundle) -> None:
    """A sample without any real step of a modality: finite probabilities and loss, the modality's pooled slots
    are zero and its presence flag 0 (the encoder attends to one dummy key)."""
    bundle = tiny_party if dataset == "synth-party" else tiny_dyadic
    model = _baseline(dataset, bundle)
    batch = bundle.splits["train"].batch(torch.arange(8))
    masks = {m: v.clone() for m, v in batch.masks.items()}
    masks["audio"][2] = False
    batch = batch.replace(masks=masks, features={m: x * masks[m][..., None] for m, x in batch.features.items()})
    captured: list[torch.Tensor] = []
    model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    model.train()
    loss = model(batch).losses["bce"]
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    assert torch.isfinite(model.predict_proba(batch)).all()
    slots = captured[-1].view(batch.size, len(batch.features), -1)  # [B, M, pooled + flag]
    audio = list(batch.features).index("audio")
    assert slots[2, audio].abs().sum() == 0
    assert slots[:, audio, -1].tolist() == [0.0 if b == 2 else float(batch.masks["audio"][b].any()) for b in range(batch.size)]


# ------------------------------------------------------------------------------------------ classic models


@pytest.fixture(scope="module")
def toy() -> DatasetBundle:
    return toy_data.load(None, None)


def _fit(name: str, toy: DatasetBundle, train: SplitData | None = None, *overrides: str) -> MMERModel:
    model = build_model(cfglib.resolve(name, "engine-toy", overrides=list(overrides)), toy.spec)
    model.fit_classic(train if train is not None else toy.splits["train"], 64)
    return model.eval()


def _probs(model: MMERModel, split: SplitData) -> torch.Tensor:
    return torch.cat([model.predict_proba(b) for b in eval_batches(split, 64)])


def test_chain_decisions_use_one_half_whatever_the_threshold(toy: DatasetBundle) -> None:
    """cc's internal decisions are at 0.5 as in scikit-learn; `model.threshold` applies only to the final
    prediction, so it does not change the probabilities."""
    test = toy.splits["test"]
    at_half = _probs(_fit("cc", toy), test)
    at_low = _probs(_fit("cc", toy, None, "model.threshold=0.2"), test)
    assert ((at_half[:, :-1] > 0.2) & (at_half[:, :-1] < 0.5)).any()  # a decision the threshold would flip
    torch.testing.assert_close(at_low, at_half)


@pytest.mark.parametrize("name", ["br", "cc"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_label_gets_its_training_frequency(name: str, value: float, toy: DatasetBundle) -> None:
    """A label constant in the training data has a constant predictor at its training frequency (clipped to
    [1e-4, 1 - 1e-4]); the other labels are fitted as usual."""
    train = toy.splits["train"]
    labels = train.labels.clone()
    labels[:, 0] = value
    probs = _probs(_fit(name, toy, dataclasses.replace(train, labels=labels)), toy.splits["test"])
    expected = 1e-4 if value == 0.0 else 1 - 1e-4
    torch.testing.assert_close(probs[:, 0], torch.full_like(probs[:, 0], expected))
    assert probs[:, 1].std() > 0.05


def _standardised(train: SplitData, test: SplitData) -> tuple[np.ndarray, np.ndarray]:
    def pooled(split: SplitData) -> np.ndarray:
        return torch.cat([pooled_features(b) for b in eval_batches(split, 64)]).numpy().astype(np.float64)

    scaler = StandardScaler().fit(pooled(train))
    return scaler.transform(pooled(train)), scaler.transform(pooled(test))


def test_label_powerset_with_two_label_sets_matches_sklearn(toy: DatasetBundle) -> None:
    """With only two label sets sklearn keeps one coefficient row (class 1 vs 0); the marginals must still be
    those of sklearn's set distribution."""
    train, test = toy.splits["train"], toy.splits["test"]
    first = (train.labels[:, 0] > 0.5).float()
    labels = torch.stack([first, first, 1 - first], dim=1)  # two sets: (1, 1, 0) and (0, 0, 1)
    two = dataclasses.replace(train, labels=labels)
    probs = _probs(_fit("lp", toy, two), test).numpy()
    x_train, x_test = _standardised(two, test)
    sets, cls = np.unique(labels.numpy().astype(int), axis=0, return_inverse=True)
    assert len(sets) == 2
    set_probs = LogisticRegression(C=1.0, max_iter=1000).fit(x_train, cls.ravel()).predict_proba(x_test)
    np.testing.assert_allclose(probs, set_probs @ sets, atol=1e-4)


@pytest.mark.parametrize("name", ["br", "cc", "lp"])
def test_fitted_classic_model_reloads_from_its_state_dict(name: str, toy: DatasetBundle) -> None:
    """The fitted estimators are buffers whose shapes depend on the data: a fresh, unfitted model loads a
    checkpoint's state dict and predicts exactly as the fitted one."""
    fitted = _fit(name, toy)
    fresh = build_model(cfglib.resolve(name, "engine-toy"), toy.spec).eval()
    fresh.load_state_dict(fitted.state_dict())
    torch.testing.assert_close(_probs(fresh, toy.splits["test"]), _probs(fitted, toy.splits["test"]), rtol=0, atol=0)
