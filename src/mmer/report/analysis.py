"""Collect a model's `analysis(batch)` outputs over a split: the only way the report sees inside a model.

Per-sample keys (models/base.py) are concatenated over the split in order; `label_correlation` ([C, C], one per
call) is averaged over batches. Shapes are checked against the documented contract, so a model that returns
something else fails here with the key and the shapes named, not deep inside a plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmer.data.dataset import SplitData
from mmer.data.loader import eval_batches
from mmer.models.base import MMERModel

MATRIX_KEYS = ("label_correlation",)


@dataclass
class AnalysisData:
    arrays: dict[str, np.ndarray]  # key -> [N, M, ...] per sample, or [C, C] for label_correlation
    labels: np.ndarray  # [N, C] gold 0/1
    present: np.ndarray  # bool [N, M]: modality present in the sample
    modalities: tuple[str, ...]
    label_names: tuple[str, ...]

    def has(self, *keys: str) -> bool:
        return all(k in self.arrays for k in keys)


def collect(model: MMERModel, split: SplitData, batch_size: int) -> AnalysisData:
    """Run `model.analysis` over every sample of `split` (eval mode, no grad, CPU)."""
    spec = model.spec
    m, c = len(spec.modalities), spec.num_labels
    per_sample: dict[str, list[np.ndarray]] = {}
    matrices: dict[str, list[np.ndarray]] = {}
    labels, present = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in eval_batches(split, batch_size):
                out = model.analysis(batch)
                for key, value in out.items():
                    value = value.detach().float().cpu()
                    _check(type(model).__name__, key, value, batch.size, m, c)
                    (matrices if key in MATRIX_KEYS else per_sample).setdefault(key, []).append(value.numpy())
                labels.append(batch.labels.numpy())
                present.append(batch.present().numpy())
    finally:
        model.train(was_training)
    arrays = {k: np.concatenate(v) for k, v in per_sample.items()}
    arrays.update({k: np.mean(np.stack(v), axis=0) for k, v in matrices.items()})
    return AnalysisData(arrays, np.concatenate(labels), np.concatenate(present), spec.modality_names, spec.label_names)


def _check(model: str, key: str, value: torch.Tensor, b: int, m: int, c: int) -> None:
    expected = {
        "common": (b, m, None),
        "specific": (b, m, None),
        "reconstructed": (b, m, None),
        "modality_label": (b, m, c),
        "discriminator_probs": (b, m, m),
        "discriminator_probs_specific": (b, m, m),
        "label_correlation": (c, c),
    }
    if key not in expected:
        raise ValueError(f"{model}.analysis returned unknown key '{key}'; documented keys: {', '.join(expected)}")
    shape = expected[key]
    if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = "[" + ", ".join("D" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{model}.analysis key '{key}' has shape {list(value.shape)}, expected {want}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{model}.analysis key '{key}' contains NaN/inf")
