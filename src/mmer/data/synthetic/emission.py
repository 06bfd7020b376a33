"""How one modality shows emotions: a linear pattern per emotion plus isotropic Gaussian noise.

    x = offset + Σ_j strength_j · a_j · pattern_j + noise · n,   n ~ N(0, I_D),

where a ∈ {0,1}^C are the emotions expressed at that token (its labels for multi-party data, the active ones of
a time step for dyadic data). Different modalities give different emotions different strengths, so some labels
are mostly acoustic, others mostly visual or textual. The offset keeps real features away from zero, so a
present modality never looks like a missing one (missing = mask False and features exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Emission:
    offset: np.ndarray  # [D]
    patterns: np.ndarray  # [C, D], unit-norm rows
    strength: np.ndarray  # [C], signal amplitude of each emotion in this modality
    noise: float  # standard deviation of every feature

    @property
    def dim(self) -> int:
        return int(self.offset.shape[0])

    @classmethod
    def random(cls, rng: np.random.Generator, strength: np.ndarray, dim: int, noise: float) -> Emission:
        patterns = rng.standard_normal((len(strength), dim))
        patterns /= np.linalg.norm(patterns, axis=1, keepdims=True)
        offset = rng.standard_normal(dim) * 0.5
        return cls(offset, patterns, np.asarray(strength, dtype=np.float64), float(noise))

    def mean(self, active: np.ndarray) -> np.ndarray:
        """active [..., C] (0/1) -> noise-free features [..., D]."""
        return self.offset + (active * self.strength) @ self.patterns

    def sample(self, active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """active [..., C] -> features [..., D] (float64)."""
        mean = self.mean(active.astype(np.float64))
        return mean + self.noise * rng.standard_normal(mean.shape)

    def loglik(self, x: np.ndarray, configs: np.ndarray) -> np.ndarray:
        """x [..., D], configs [M, C] -> log p(x | a = configs[m]) [..., M], up to a constant that depends on x only."""
        centres = (configs * self.strength) @ self.patterns  # [M, D]
        return ((x - self.offset) @ centres.T - 0.5 * (centres**2).sum(axis=1)) / self.noise**2
