"""Tiny TAILOR set-up shared by test_tailor.py and test_tailor_contracts.py: a toy data spec, small configs, a padded
batch, the model built from a fixed seed, and random weights under which every block visibly matters."""

from __future__ import annotations

import torch

from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.models.tailor import TAILOR, TAILORConfig
from tests.models.helpers import padded_batch

SPEC = DataSpec("toy", ("a", "b", "c", "d"), (ModalitySpec("text", 7, 6), ModalitySpec("visual", 4, 6), ModalitySpec("audio", 5, 6)))
T, V, A = 0, 1, 2  # positions of text, visual, audio in SPEC (and in the model's lists)
TINY: dict[str, object] = dict(hidden_size=16, num_heads=2, intermediate_size=16, layers={"text": 1, "visual": 1, "audio": 1}, cross_layers=1)
NO_DROPOUT: dict[str, object] = dict(dropout=0.0, attention_dropout=0.0, private_dropout=0.0, common_dropout=0.0, discriminator_dropout=0.0)


def make_batch(spec: DataSpec = SPEC, b: int = 6, seed: int = 0) -> Batch:
    return padded_batch(spec, b, seed)


def model_for(spec: DataSpec = SPEC, **options: object) -> TAILOR:
    torch.manual_seed(0)
    return TAILOR(TAILORConfig(**{**TINY, **options}), spec)  # type: ignore[arg-type]


def scrambled(model: TAILOR, std: float = 0.5) -> TAILOR:
    """Random weights instead of BERT's N(0, 0.02) init, under which the label embeddings swamp the decoder and the
    output hardly depends on the input (~1e-5): the equations must hold for any weights, and the tests need the
    input to matter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model
