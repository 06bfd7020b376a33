"""What the speed benchmarks share: random pre-collated batches shaped like aligned CMU-MOSEI (text 60x300, visual
60x35, audio 60x74, 6 labels, every step real), the protocol's step counts (reference/official_speed.md), and the
peak-memory reading. Imported by the *_speed.py scripts next to it (run as `python benchmarks/<model>_speed.py`)."""

from __future__ import annotations

import resource

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec

SPEC = DataSpec(
    "mosei-aligned",
    ("happy", "sad", "anger", "surprise", "disgust", "fear"),
    (ModalitySpec("text", 300, 60), ModalitySpec("visual", 35, 60), ModalitySpec("audio", 74, 60)),
)
BATCH, WARMUP, TRAIN_STEPS, INFER_SAMPLES = 64, 2, 10, 640


def make_batches(n: int, batch: int = BATCH, seed: int = 0, label_rate: float = 0.27) -> list[Batch]:
    """n batches of `batch` samples with all-True masks; labels on with probability `label_rate` (~1.6 per sample)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(n):
        features = {m.name: torch.randn(batch, m.max_len, m.dim, generator=g) for m in SPEC.modalities}
        masks = {m.name: torch.ones(batch, m.max_len, dtype=torch.bool) for m in SPEC.modalities}
        labels = (torch.rand(batch, SPEC.num_labels, generator=g) < label_rate).float()
        batches.append(Batch(features, masks, labels, [f"{i}-{j}" for j in range(batch)], torch.arange(batch)))
    return batches


def peak_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
