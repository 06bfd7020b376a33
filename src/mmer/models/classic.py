"""Classic multi-label baselines on pooled features: binary relevance (`br`), classifier chains (`cc`) and label
powerset (`lp`), each with scikit-learn logistic regression on standardised `pooled_features` (data/pooling.py).

They are fitted in one pass by the engine (`fit_classic`) and produce the same run directory as every model.
The fitted estimators are stored as tensors (buffers), so checkpoints stay `weights_only`-loadable and
prediction runs in torch:
- br: one logistic regression per label.
- cc (Read et al. 2011): label j's regression also sees labels 0..j-1 of the chain (the true labels when fitting,
  the predicted 0/1 labels when predicting, as scikit-learn's ClassifierChain does). Chain order: label order.
- lp: one multinomial regression over the label sets seen in training; `probs` are the per-label marginals of
  the predicted set distribution, thresholded like every model (with threshold 0.5 this is close to, but not
  always equal to, predicting the single most probable set).
A label (or set) that is constant in the training data gets a constant predictor at its training frequency.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from mmer.config import ModelConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, SplitData
from mmer.data.loader import eval_batches
from mmer.data.pooling import pooled_features
from mmer.errors import ConfigError
from mmer.models.base import MMERModel, ModelOutput
from mmer.registry import MODELS


@dataclass
class ClassicConfig(ModelConfig):
    C: float = 1.0  # inverse L2 regularisation strength of the logistic regressions
    max_iter: int = 1000


def _fit_binary(x: np.ndarray, y: np.ndarray, cfg: ClassicConfig) -> tuple[np.ndarray, float]:
    if y.min() == y.max():  # constant label: predict its training frequency
        p = np.clip(y.mean(), 1e-4, 1 - 1e-4)
        return np.zeros(x.shape[1]), float(np.log(p / (1 - p)))
    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter).fit(x, y)
    return clf.coef_[0], float(clf.intercept_[0])


class _ClassicModel(MMERModel):
    """Shared parts: standardisation buffers, pooled features, buffers resized on load."""

    def __init__(self, cfg: ClassicConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        if not cfg.C > 0 or cfg.max_iter < 1:
            raise ConfigError(f"model.C must be > 0 and model.max_iter >= 1, got C={cfg.C}, max_iter={cfg.max_iter}")
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("scale", torch.ones(0))

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in self._buffers:  # fitted shapes depend on the data: adopt the checkpoint's
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _design(self, split: SplitData, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        x = torch.cat([pooled_features(b) for b in eval_batches(split, batch_size)]).numpy().astype(np.float64)
        scaler = StandardScaler().fit(x)
        self.mean = torch.from_numpy(scaler.mean_).float()
        self.scale = torch.from_numpy(scaler.scale_).float()
        return scaler.transform(x), split.labels.numpy().astype(np.int64)

    def _inputs(self, batch: Batch) -> Tensor:
        return (pooled_features(batch) - self.mean) / self.scale  # [B, F]

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self._probs(self._inputs(batch)))

    @abc.abstractmethod
    def _probs(self, x: Tensor) -> Tensor:
        """x [B, F] standardised features -> [B, C] label probabilities."""


@MODELS.register("br", options=ClassicConfig, summary="binary relevance: one logistic regression per label")
class BinaryRelevance(_ClassicModel):
    def __init__(self, cfg: ClassicConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self.register_buffer("coef", torch.zeros(0))  # [C, F]
        self.register_buffer("intercept", torch.zeros(0))  # [C]

    def fit_classic(self, split: SplitData, batch_size: int) -> None:
        x, y = self._design(split, batch_size)
        fits = [_fit_binary(x, y[:, j], self.cfg) for j in range(y.shape[1])]
        self.coef = torch.tensor(np.stack([c for c, _ in fits]), dtype=torch.float32)
        self.intercept = torch.tensor([b for _, b in fits], dtype=torch.float32)

    def _probs(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x @ self.coef.T + self.intercept)


@MODELS.register("cc", options=ClassicConfig, summary="classifier chains of logistic regressions")
class ClassifierChain(_ClassicModel):
    def __init__(self, cfg: ClassicConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self.register_buffer("coef", torch.zeros(0))  # [C, F + C]: label j uses columns F .. F+j-1 of earlier labels
        self.register_buffer("intercept", torch.zeros(0))  # [C]

    def fit_classic(self, split: SplitData, batch_size: int) -> None:
        x, y = self._design(split, batch_size)
        n_feat, n_labels = x.shape[1], y.shape[1]
        coef = np.zeros((n_labels, n_feat + n_labels))
        intercept = np.zeros(n_labels)
        for j in range(n_labels):  # a chain is sequential by definition
            c, b = _fit_binary(np.hstack([x, y[:, :j]]), y[:, j], self.cfg)
            coef[j, : n_feat + j], intercept[j] = c, b
        self.coef = torch.tensor(coef, dtype=torch.float32)
        self.intercept = torch.tensor(intercept, dtype=torch.float32)

    def _probs(self, x: Tensor) -> Tensor:
        n_feat = x.shape[1]
        decided = torch.zeros(x.shape[0], self.coef.shape[0], device=x.device)  # [B, C] predicted 0/1 so far
        probs = torch.zeros_like(decided)
        for j in range(self.coef.shape[0]):  # a chain is sequential by definition; each link is vectorised over B
            logit = x @ self.coef[j, :n_feat] + decided @ self.coef[j, n_feat:] + self.intercept[j]
            probs[:, j] = torch.sigmoid(logit)
            decided[:, j] = (probs[:, j] > 0.5).float()
        return probs


@MODELS.register("lp", options=ClassicConfig, summary="label powerset: multinomial logistic regression over label sets")
class LabelPowerset(_ClassicModel):
    def __init__(self, cfg: ClassicConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self.register_buffer("coef", torch.zeros(0))  # [K, F]
        self.register_buffer("intercept", torch.zeros(0))  # [K]
        self.register_buffer("label_sets", torch.zeros(0))  # [K, C]

    def fit_classic(self, split: SplitData, batch_size: int) -> None:
        x, y = self._design(split, batch_size)
        sets, cls = np.unique(y, axis=0, return_inverse=True)
        if len(sets) == 1:
            coef, intercept = np.zeros((1, x.shape[1])), np.zeros(1)
        else:
            clf = LogisticRegression(C=self.cfg.C, max_iter=self.cfg.max_iter).fit(x, cls.ravel())
            coef, intercept = clf.coef_, clf.intercept_
            if len(sets) == 2:  # sklearn stores one row for two classes: logit of class 1 vs 0
                coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        self.coef = torch.tensor(coef, dtype=torch.float32)
        self.intercept = torch.tensor(intercept, dtype=torch.float32)
        self.label_sets = torch.tensor(sets, dtype=torch.float32)

    def _probs(self, x: Tensor) -> Tensor:
        set_probs = torch.softmax(x @ self.coef.T + self.intercept, dim=1)  # [B, K]
        return set_probs @ self.label_sets  # [B, C] marginal probability of each label
