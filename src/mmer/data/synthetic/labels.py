"""Multi-hot emotion vectors drawn exactly from a Boltzmann distribution over every label configuration.

    p(e | b) ∝ exp(b·e + ½ eᵀJe),   e ∈ {0,1}^C without the all-zero vector,

with per-token biases b (personality, inertia, contagion, ...) and one fixed symmetric coupling matrix J (zero
diagonal) that makes labels co-occur (J_ij > 0) or exclude each other (J_ij < 0). With C ≤ 9 there are at most
511 configurations, so sampling, marginals and partition functions are exact sums, and the oracle in `oracle.py`
uses the very same tables as the generator. The empty configuration is excluded because every annotated
token feels *something* (neutral is a label of its own), as in MEmoR and CMU-MOSEI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax


def all_configs(num_labels: int, include_empty: bool = False) -> np.ndarray:
    """float64 [M, C]: every multi-hot vector, row r = binary code r (+1 without the empty one); bit j = label j."""
    codes = np.arange(0 if include_empty else 1, 2**num_labels)
    return ((codes[:, None] >> np.arange(num_labels)[None, :]) & 1).astype(np.float64)


def coupling_matrix(names: Sequence[str], pairs: Mapping[tuple[str, str], float]) -> np.ndarray:
    """Symmetric [C, C] J with zero diagonal from {(label_a, label_b): J_ab}."""
    index = {n: i for i, n in enumerate(names)}
    j = np.zeros((len(names), len(names)))
    for (a, b), value in pairs.items():
        if a == b:
            raise ValueError(f"coupling of '{a}' with itself; put self terms in the bias")
        j[index[a], index[b]] = j[index[b], index[a]] = value
    return j


@dataclass(frozen=True)
class LabelModel:
    """Exact Boltzmann distribution over the non-empty multi-hot vectors of `names`."""

    names: tuple[str, ...]
    coupling: np.ndarray  # [C, C] symmetric J, zero diagonal
    configs: np.ndarray = field(init=False)  # [M, C] every non-empty configuration
    pair_energy: np.ndarray = field(init=False)  # [M] ½ eᵀJe per configuration

    def __post_init__(self) -> None:
        configs = all_configs(len(self.names))
        object.__setattr__(self, "configs", configs)
        object.__setattr__(self, "pair_energy", 0.5 * np.einsum("mi,ij,mj->m", configs, self.coupling, configs))

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def logits(self, bias: np.ndarray) -> np.ndarray:
        """bias [..., C] -> unnormalised log-probability of every configuration [..., M]."""
        return bias @ self.configs.T + self.pair_energy

    def marginals(self, logits: np.ndarray) -> np.ndarray:
        """[..., M] configuration log-weights -> [..., C] probability that each label is on."""
        return softmax(logits, axis=-1) @ self.configs

    def sample(self, bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """bias [N, C] -> one exact draw per row, bool [N, C] (inverse CDF over the M configurations)."""
        probs = softmax(self.logits(bias), axis=-1)  # [N, M]
        cdf = np.cumsum(probs, axis=-1)
        u = rng.random(len(bias))[:, None] * cdf[:, -1:]
        index = np.minimum((cdf < u).sum(axis=-1), len(self.configs) - 1)
        return self.configs[index].astype(bool)

    def shifted_partition(self, shift: np.ndarray) -> ShiftedPartition:
        """Helper computing log Z(β + A e) for every configuration e of a parent token (A = `shift`)."""
        return ShiftedPartition(self, shift)


class ShiftedPartition:
    """log Z(β + A e) for all M parent configurations e at once, for many child biases β.

    A child whose bias depends linearly on a parent (b_child = β + A e_parent) contributes −log Z(b_child) to the
    parent's posterior. Σ_c exp((β + A e)·c + ½cᵀJc) = Σ_c exp(eᵀAᵀc) · exp(β·c + ½cᵀJc): a fixed [M, M] matrix
    exp(E Aᵀ Eᵀ) times a per-child vector, so a batch of children is one matrix product.
    """

    def __init__(self, labels: LabelModel, shift: np.ndarray):
        e = labels.configs
        self.labels = labels
        self.kernel = np.exp(e @ shift.T @ e.T).astype(np.float32)  # [M parent, M child]; float32 halves the cost

    def __call__(self, beta: np.ndarray) -> np.ndarray:
        """beta [P, C] -> log Z [P, M], row p, column e = log Σ_c exp((β_p + A e)·c + ½cᵀJc)."""
        r = self.labels.logits(beta)  # [P, M child]
        top = r.max(axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            return np.log(np.exp(r - top).astype(np.float32) @ self.kernel.T).astype(np.float64) + top

