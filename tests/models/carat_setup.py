"""Tiny CARAT set-up shared by test_carat.py and test_carat_contracts.py: a toy data spec, a small config, a padded
batch and the model built from a fixed seed."""

from __future__ import annotations

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.models.carat import CARAT, CARATConfig
from tests.models.helpers import padded_batch

SPEC = DataSpec("toy", ("a", "b", "c", "d"), (ModalitySpec("text", 7, 6), ModalitySpec("visual", 4, 8), ModalitySpec("audio", 5, 9)))
TINY: dict[str, object] = dict(hidden_size=16, latent_size=8, num_heads=2, intermediate_size=16, layers={"text": 1, "visual": 1, "audio": 1}, queue_size=64)


def make_batch(spec: DataSpec = SPEC, b: int = 6, seed: int = 0) -> Batch:
    return padded_batch(spec, b, seed)


def model_for(spec: DataSpec = SPEC, **options: object) -> CARAT:
    torch.manual_seed(0)
    return CARAT(CARATConfig(**{**TINY, **options}), spec)  # type: ignore[arg-type]
