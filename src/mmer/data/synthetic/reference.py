"""Reference points of a generated dataset, measured on its test split with the project's metric suite.

- `chance`: each label predicted on at random with its training-set rate (independent Bernoulli draws from a
  fixed seed; `CHANCE_DRAWS` draws pooled into one evaluation).
- `target_only` (synth-party): the oracle that sees only the target token (see `oracle.py`).
- `late_fusion` (synth-dyadic): the oracle that combines the modalities without lining up their steps.
- `ceiling`: the oracle that knows every generator parameter (exact for synth-dyadic, mean-field for synth-party).
A model's scores are read between `chance` and `ceiling`; on synth-party, above `target_only` means it uses context;
on synth-dyadic, only a model above `late_fusion` can be using the step alignment of the modalities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmer.metrics import METRIC_KEYS, binarize, compute_metrics

CHANCE_DRAWS = 20
CHANCE_SEED = 0
THRESHOLD = 0.5


def scores(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """The scalar metrics of `compute_metrics` (no per-label breakdown), rounded for meta.json."""
    metrics = compute_metrics(y_true, y_pred, names)
    return {key: round(metrics[key], 4) for key in METRIC_KEYS}


def oracle_scores(probs: np.ndarray, y_true: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    return scores(y_true, binarize(probs, THRESHOLD), names)


def chance_scores(train_labels: np.ndarray, y_true: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Metrics of `CHANCE_DRAWS` independent Bernoulli(training rate) predictions of the test split, pooled.

    Pooling the draws into one evaluation (the test labels repeated once per draw) gives the sample-averaged
    metrics' mean exactly and the micro/macro F1 of the expected counts, with one metric call.
    """
    rates = train_labels.mean(axis=0)
    rng = np.random.default_rng(CHANCE_SEED)
    guesses = rng.random((CHANCE_DRAWS, *y_true.shape)) < rates  # [draws, N, C]
    repeated = np.broadcast_to(y_true, guesses.shape)
    return scores(repeated.reshape(-1, y_true.shape[1]), guesses.reshape(-1, y_true.shape[1]), names)
