"""The classic baselines (br, cc, lp) predict what scikit-learn's own estimators predict on the same standardised
pooled features: the torch buffers are a faithful copy of the fitted models, not an approximation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import ClassifierChain
from sklearn.preprocessing import StandardScaler

from mmer import config as cfglib
from mmer.data.loader import eval_batches
from mmer.data.pooling import pooled_features
from mmer.engine.trainer import build_model
from tests.engine import toy_data


@pytest.fixture(scope="module")
def splits():
    bundle = toy_data.load(None, None)
    return bundle.spec, bundle.splits["train"], bundle.splits["test"]


def _pooled(split) -> np.ndarray:
    return torch.cat([pooled_features(b) for b in eval_batches(split, 64)]).numpy().astype(np.float64)


def _fitted(name: str, splits) -> tuple[torch.nn.Module, np.ndarray, np.ndarray, np.ndarray]:
    """The mmer model fitted on train, its test probabilities, and sklearn's standardised train/test inputs."""
    spec, train, test = splits
    model = build_model(cfglib.resolve(name, "engine-toy"), spec)
    model.fit_classic(train, 64)
    model.eval()
    probs = torch.cat([model.predict_proba(b) for b in eval_batches(test, 64)]).numpy()
    scaler = StandardScaler().fit(_pooled(train))
    return model, probs, scaler.transform(_pooled(train)), scaler.transform(_pooled(test))


def test_binary_relevance_is_one_sklearn_regression_per_label(splits):
    _, probs, x_train, x_test = _fitted("br", splits)
    y = splits[1].labels.numpy().astype(int)
    expected = np.stack(
        [LogisticRegression(C=1.0, max_iter=1000).fit(x_train, y[:, j]).predict_proba(x_test)[:, 1] for j in range(y.shape[1])], axis=1
    )
    np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_classifier_chain_feeds_predicted_decisions_down_the_chain_as_sklearn_does(splits):
    _, probs, x_train, x_test = _fitted("cc", splits)
    y = splits[1].labels.numpy().astype(int)
    chain = ClassifierChain(LogisticRegression(C=1.0, max_iter=1000), order=list(range(y.shape[1]))).fit(x_train, y)
    np.testing.assert_allclose(probs, chain.predict_proba(x_test), atol=1e-4)


def test_label_powerset_gives_the_label_marginals_of_sklearns_set_distribution(splits):
    model, probs, x_train, x_test = _fitted("lp", splits)
    y = splits[1].labels.numpy().astype(int)
    sets, cls = np.unique(y, axis=0, return_inverse=True)
    set_probs = LogisticRegression(C=1.0, max_iter=1000).fit(x_train, cls.ravel()).predict_proba(x_test)  # [N, K]
    np.testing.assert_allclose(probs, set_probs @ sets, atol=1e-4)
    assert torch.equal(model.label_sets, torch.tensor(sets, dtype=torch.float32))
