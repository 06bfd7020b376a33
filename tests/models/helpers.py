"""What the model tests share: a toy batch, a batch with modalities missing, one training step through the engine's
StepContext, and a one-epoch CLI training run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning_fabric import Fabric

from mmer.cli import main
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec
from mmer.engine.context import StepContext
from mmer.models.base import MMERModel

# real-data presets (docs/real_data.md, "Presets"): real dataset -> the synthetic preset it mirrors
REAL_DATA_PRESETS = ("mosei-text", "music-emotions", "meld")
MIRRORS = {"mosei-text": "synth-dyadic", "music-emotions": "synth-dyadic", "meld": "synth-party"}


def padded_batch(spec: DataSpec, b: int, seed: int = 0, fixed_labels: bool = True) -> Batch:
    """Sample 0 is full length, sample 2 lacks the second modality; with `fixed_labels` sample 0 has every label
    and sample 1 none (so both polarities of every label occur)."""
    g = torch.Generator().manual_seed(seed)
    features, masks = {}, {}
    for i, m in enumerate(spec.modalities):
        lengths = torch.randint(2, m.max_len + 1, (b,), generator=g)
        lengths[0] = m.max_len
        mask = torch.arange(m.max_len)[None] < lengths[:, None]  # [B, L]
        if i == 1:
            mask[2] = False
        features[m.name] = torch.randn(b, m.max_len, m.dim, generator=g) * mask[..., None]
        masks[m.name] = mask
    labels = (torch.rand(b, spec.num_labels, generator=g) < 0.4).float()  # [B, C]
    if fixed_labels:
        labels[0] = 1.0
        labels[1] = 0.0
    return Batch(features, masks, labels, [str(i) for i in range(b)], torch.arange(b))


def with_missing_modalities(batch: Batch, empty_sample: int = 3, absent: str = "audio") -> Batch:
    """In place: sample `empty_sample` has no modality at all and no sample has `absent` (masks False, zeros)."""
    for m in batch.masks:
        batch.masks[m][empty_sample] = False
        batch.features[m][empty_sample] = 0.0
    batch.masks[absent][:] = False
    batch.features[absent].zero_()
    return batch


def cli_train_one_epoch(model: str, out: Path, dataset: str, sets: list[str], root: Path | None = None) -> dict:
    """`mmer train` for one quiet epoch with `--set` overrides; asserts success and returns metrics.json."""
    args = ["train", "--model", model, "--dataset", dataset, "--out", str(out), "--epochs", "1", "--quiet"]
    args += ["--root", str(root)] if root else []
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["micro_f1"] <= 1.0
    return metrics


def train_step(model: MMERModel, batch: Batch, fabric: Fabric) -> dict[str, float]:
    """One training step of `model` on `batch` through the engine's StepContext, from zeroed gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    return model.training_step(batch, StepContext(fabric, 0, 0, 1))
