"""A tiny learnable dataset registered as `engine-toy` for engine tests (independent of the synthetic benchmark).

Importable from a child process too (the 2-process test re-runs a script that imports this file).
"""

from __future__ import annotations

import torch

from mmer.data.dataset import DatasetBundle, SplitData, spec_from_splits
from mmer.registry import DATASETS

LABELS = ["a", "b", "c"]


def make_split(n: int, seed: int) -> SplitData:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, len(LABELS), generator=g) < 0.4).float()
    features, masks = {}, {}
    for name, dim, length in (("text", 5, 6), ("audio", 4, 7)):
        x = 0.7 * torch.randn(n, length, dim, generator=g)
        x[:, :, : len(LABELS)] += y[:, None, :]
        lengths = torch.randint(2, length + 1, (n,), generator=g)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        features[name] = x * mask[..., None]
        masks[name] = mask
    return SplitData(features, masks, y, [f"{seed}-{i}" for i in range(n)], torch.arange(n))


def load(root: object, options: object) -> DatasetBundle:
    splits = {"train": make_split(96, 1), "valid": make_split(37, 2), "test": make_split(41, 3)}
    return DatasetBundle(spec_from_splits("engine-toy", LABELS, splits), splits, "engine-toy (test data)")


if "engine-toy" not in DATASETS:
    DATASETS.register("engine-toy", summary="tiny learnable data for engine tests")(load)
