"""`train.micro_batch`: a batch run in chunks gives the whole batch's gradients and logged values, AMP refuses it,
and `mmer train` accepts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning_fabric import Fabric

from mmer import config as cfglib
from mmer.cli import main
from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.engine.context import StepContext, run_training_step
from mmer.errors import ConfigError
from mmer.models.base import MMERModel
from mmer.models.baseline import BaselineConfig, LateFusionBaseline
from mmer.models.tailor import TAILOR, TAILORConfig
from tests.models.helpers import padded_batch

SPEC = DataSpec("toy", ("a", "b", "c", "d"), (ModalitySpec("text", 7, 6), ModalitySpec("visual", 4, 6), ModalitySpec("audio", 5, 6)))
TAILOR_TINY = dict(
    hidden_size=16, num_heads=2, intermediate_size=16, layers={"text": 1, "visual": 1, "audio": 1}, cross_layers=1,
    dropout=0.0, attention_dropout=0.0, private_dropout=0.0, common_dropout=0.0, discriminator_dropout=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def fabric() -> Fabric:
    return Fabric(accelerator="cpu", devices=1)


def full_length_batch(b: int = 7, seed: int = 0) -> Batch:
    """Every step real and every modality present: the case where chunking is exact for every TAILOR loss."""
    batch = padded_batch(SPEC, b, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for m in SPEC.modalities:
        batch.masks[m.name][:] = True
        batch.features[m.name] = torch.randn(b, m.max_len, m.dim, generator=g)
    return batch


def gradients(model: MMERModel, batch: Batch, fabric: Fabric, micro_batch: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    model.train()
    model.zero_grad(set_to_none=True)
    logs = run_training_step(model, batch, StepContext(fabric, 0, 0, 1), micro_batch)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, logs


def assert_same(whole: tuple[dict, dict], chunked: tuple[dict, dict]) -> None:
    assert whole[0].keys() == chunked[0].keys()
    for name, grad in whole[0].items():
        torch.testing.assert_close(chunked[0][name], grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")
    assert whole[1].keys() == chunked[1].keys()
    for key, value in whole[1].items():
        assert chunked[1][key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize("micro_batch", [1, 3, 4])
def test_baseline_chunks_give_the_whole_batchs_gradients_with_padding_and_missing_modalities(fabric, micro_batch):
    torch.manual_seed(0)
    model = LateFusionBaseline(BaselineConfig(dropout=0.0), SPEC)
    batch = padded_batch(SPEC, 7, seed=3)  # ragged lengths, one sample without visual: BCE is a mean over samples
    assert_same(gradients(model, batch, fabric, 0), gradients(model, batch, fabric, micro_batch))


def test_tailor_chunks_give_the_whole_batchs_gradients_on_full_length_batches(fabric):
    torch.manual_seed(0)
    model = TAILOR(TAILORConfig(**TAILOR_TINY), SPEC)
    batch = full_length_batch()
    whole, chunked = gradients(model, batch, fabric, 0), gradients(model, batch, fabric, 3)
    assert {"ml", "adv_common", "adv_private", "orth", "cml"} <= {k.removeprefix("loss_") for k in whole[1]}
    assert_same(whole, chunked)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_tailor_ctc_loss_summed_over_the_batch_is_not_scaled_down_by_chunking(fabric, reduction):
    """Unaligned data: the code's CTC loss is a sum over the batch's samples, so each chunk must add its own sum."""
    spec = DataSpec("toy", ("a", "b", "c"), (ModalitySpec("text", 7, 4), ModalitySpec("visual", 4, 6), ModalitySpec("audio", 5, 5)))
    batch = padded_batch(spec, 6, seed=2)
    g = torch.Generator().manual_seed(5)
    for m in spec.modalities:
        batch.masks[m.name][:] = True
        batch.features[m.name] = torch.randn(6, m.max_len, m.dim, generator=g)
    torch.manual_seed(0)
    model = TAILOR(TAILORConfig(**TAILOR_TINY, ctc=True, ctc_reduction=reduction), spec)
    whole, chunked = gradients(model, batch, fabric, 0), gradients(model, batch, fabric, 2)
    assert whole[1]["loss_ctc"] > 0
    assert_same(whole, chunked)


def test_a_chunk_size_of_at_least_the_batch_is_the_plain_step(fabric):
    torch.manual_seed(0)
    model = LateFusionBaseline(BaselineConfig(), SPEC)
    batch = padded_batch(SPEC, 5)
    torch.manual_seed(1)
    plain = gradients(model, batch, fabric, 0)
    torch.manual_seed(1)
    assert_same(plain, gradients(model, batch, fabric, 5))  # dropout on: same draws only if it is one call


def test_chunks_are_views_of_consecutive_rows_with_every_field():
    batch = padded_batch(SPEC, 5)
    batch.personality = torch.randn(5, 6, 2)
    batch.party = PartyStructure(torch.arange(30).view(5, 6), torch.arange(30).view(5, 6) + 1, torch.eye(5, 6, dtype=torch.bool))
    batch.extras["weight"] = torch.arange(5.0)
    chunks = batch.chunks(2)
    assert [c.size for c in chunks] == [2, 2, 1]
    assert [c.ids for c in chunks] == [["0", "1"], ["2", "3"], ["4"]]
    for field in ("labels", "index", "personality"):
        torch.testing.assert_close(torch.cat([getattr(c, field) for c in chunks]), getattr(batch, field))
    torch.testing.assert_close(torch.cat([c.party.target for c in chunks]), batch.party.target)
    torch.testing.assert_close(torch.cat([c.extras["weight"] for c in chunks]), batch.extras["weight"])
    for m in batch.features:
        assert chunks[0].features[m].data_ptr() == batch.features[m].data_ptr()  # a view: no copy of the inputs
        torch.testing.assert_close(torch.cat([c.masks[m] for c in chunks]), batch.masks[m])
    with pytest.raises(ValueError, match="chunk size must be >= 1"):
        batch.chunks(0)


def test_amp_and_negative_sizes_are_refused_naming_the_key():
    data = cfglib.default_dict("amp", "synth-dyadic")
    data["train"]["micro_batch"] = 16
    with pytest.raises(ConfigError, match=r"'train.micro_batch' must be 0 for model 'amp'"):
        cfglib.build(data, "cli")
    data = cfglib.default_dict("baseline", "synth-dyadic")
    data["train"]["micro_batch"] = -1
    with pytest.raises(ConfigError, match=r"'train.micro_batch' must be >= 0, got -1"):
        cfglib.build(data, "cli")


def test_mmer_train_with_micro_batches_records_the_key(tmp_path: Path):
    out = tmp_path / "run"
    args = ["train", "--model", "baseline", "--dataset", "engine-toy", "--quiet", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--set", "data.batch_size=16", "--set", "train.micro_batch=5"]) == 0
    assert cfglib.read_yaml(out / "config.yaml", "run config")["train"]["micro_batch"] == 5
    assert json.loads((out / "metrics.json").read_text())["test"]["micro_f1"] >= 0.0
