"""synth-dyadic: CMU-MOSEI-like single-speaker sequences with six emotions.

Generative process of one sample (all samples drawn together):
1. Emotions e from the exact Boltzmann distribution of `labels.py` with fixed biases `BASE_BIAS` (MOSEI-like
   label rates) and couplings `COUPLING` (happy excludes the negative emotions, anger goes with disgust, ...).
2. A real length uniform in [MIN_LEN, MAX_LEN]; every present emotion is *active* at each real step
   independently with probability `ACTIVATION`, shared by the three aligned modalities (an expressive moment).
3. Each modality at each real step is `Emission` of the active emotions; padding steps are zero with mask False.
   Every modality is present (as in MOSEI); missing modalities are studied with `mmer evaluate --drop-modalities`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from mmer.data.dataset import SplitData
from mmer.data.synthetic.emission import Emission
from mmer.data.synthetic.labels import LabelModel, coupling_matrix

EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
MODALITIES = ("text", "visual", "audio")
DIMS = {"text": 32, "visual": 24, "audio": 16}
MIN_LEN, MAX_LEN = 6, 20
ACTIVATION = 0.35
WORLD_SEED = 20_202

BASE_BIAS = {"happy": -0.7, "sad": -1.4, "anger": -1.8, "surprise": -2.3, "disgust": -2.1, "fear": -2.6}
COUPLING = {
    ("happy", "sad"): -1.5, ("happy", "anger"): -1.5, ("happy", "disgust"): -1.2, ("happy", "surprise"): 0.5,
    ("anger", "disgust"): 1.8, ("sad", "anger"): 0.5, ("sad", "fear"): 0.8, ("surprise", "fear"): 0.8,
}
STRENGTH = {  # each emotion has a modality it shows best in
    #          hap  sad  ang  sur  dis  fea
    "text":   (1.0, 1.0, 0.4, 0.3, 0.4, 0.3),
    "visual": (1.0, 0.4, 0.4, 1.0, 1.0, 0.3),
    "audio":  (0.3, 0.6, 1.0, 0.4, 0.3, 1.0),
}
NOISE = {"text": 0.75, "visual": 0.75, "audio": 0.75}


@dataclass(frozen=True)
class DyadicWorld:
    """Every parameter of the synth-dyadic generator (what the oracle knows)."""

    labels: LabelModel
    emissions: dict[str, Emission]
    base_bias: np.ndarray  # [C]
    activation: float


@dataclass
class DyadicSamples:
    emotions: np.ndarray  # bool [N, C]
    lengths: np.ndarray  # int [N]
    features: dict[str, np.ndarray]  # modality -> float [N, MAX_LEN, D] (0 on padding)


@functools.cache
def dyadic_world() -> DyadicWorld:
    rng = np.random.default_rng(WORLD_SEED)
    return DyadicWorld(
        labels=LabelModel(EMOTIONS, coupling_matrix(EMOTIONS, COUPLING)),
        emissions={m: Emission.random(rng, np.asarray(STRENGTH[m]), DIMS[m], NOISE[m]) for m in MODALITIES},
        base_bias=np.array([BASE_BIAS[e] for e in EMOTIONS]),
        activation=ACTIVATION,
    )


def sample(world: DyadicWorld, n: int, rng: np.random.Generator) -> DyadicSamples:
    emotions = world.labels.sample(np.broadcast_to(world.base_bias, (n, len(EMOTIONS))), rng)
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n)
    real = np.arange(MAX_LEN)[None, :] < lengths[:, None]  # [N, L]
    active = (rng.random((n, MAX_LEN, len(EMOTIONS))) < world.activation) & emotions[:, None, :] & real[..., None]
    features = {m: world.emissions[m].sample(active, rng) * real[..., None] for m in MODALITIES}
    return DyadicSamples(emotions, lengths, features)


def to_split(samples: DyadicSamples, split: str) -> SplitData:
    n = len(samples.emotions)
    real = torch.from_numpy(np.arange(MAX_LEN)[None, :] < samples.lengths[:, None])
    return SplitData(
        features={m: torch.from_numpy(samples.features[m].astype(np.float32)) for m in MODALITIES},
        masks={m: real.clone() for m in MODALITIES},
        labels=torch.from_numpy(samples.emotions.astype(np.float32)),
        ids=[f"{split}-{i:05d}" for i in range(n)],
        clip_index=torch.arange(n),
    )
