import math

import pytest
import torch

from mmer import config as cfglib
from mmer.config import TrainConfig
from mmer.engine.optim import BertAdam, build_optimizer, build_scheduler, lr_factor
from mmer.errors import ConfigError
from mmer.models.base import MMERModel
from tests.engine import toy_data  # noqa: F401  (registers the `engine-toy` dataset)


def test_bertadam_matches_hand_computed_update_without_bias_correction():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = BertAdam([{"params": [p], "weight_decay": 0.01}], lr=0.1, eps=1e-6, max_grad_norm=None)
    g = torch.tensor([0.3, -0.4])
    p.grad = g.clone()
    opt.step()
    m, v = 0.1 * g, 0.001 * g * g  # no bias correction: the first Adam update is m / sqrt(v) ~ sqrt(10) * sign(g)
    expected = torch.tensor([1.0, -2.0]) - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * torch.tensor([1.0, -2.0]))
    assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_bertadam_clips_each_tensor_to_max_norm_before_its_update():
    big = torch.nn.Parameter(torch.zeros(2))
    small = torch.nn.Parameter(torch.zeros(2))
    opt = BertAdam([{"params": [big, small], "weight_decay": 0.0}], lr=1.0, max_grad_norm=1.0)
    big.grad = torch.tensor([30.0, 40.0])  # norm 50 -> clipped to norm 1
    small.grad = torch.tensor([0.3, 0.4])  # norm 0.5 -> untouched
    opt.step()
    assert torch.allclose(opt.state[big]["exp_avg"], 0.1 * torch.tensor([0.6, 0.8]), atol=1e-6)
    assert torch.allclose(opt.state[small]["exp_avg"], 0.1 * torch.tensor([0.3, 0.4]), atol=1e-6)


def test_bertadam_skips_parameters_without_gradient():
    p = torch.nn.Parameter(torch.ones(3))
    BertAdam([p], lr=0.1, weight_decay=0.5).step()
    assert torch.equal(p.detach(), torch.ones(3))


def test_warmup_linear_is_zero_first_peaks_at_warmup_and_ends_at_zero():
    cfg = TrainConfig(schedule="warmup_linear", warmup=0.1)
    total = 1000
    assert lr_factor(cfg, 0, total, 10) == 0.0
    assert lr_factor(cfg, 50, total, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 100, total, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 550, total, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, total, total, 10) == 0.0


def test_warmup_cosine_shape():
    cfg = TrainConfig(schedule="warmup_cosine", warmup=0.2)
    assert lr_factor(cfg, 10, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 20, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 60, 100, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_epoch_warmup_cosine_reproduces_the_amp_code_learning_rates():
    # AMP's official run (reference): epochs 0..9 use 5e-6, 5e-6, 9.5e-6, ..., 4.1e-5 and never leave warm-up
    cfg = TrainConfig(schedule="epoch_warmup_cosine", lr=5e-5, warmup=10, warmup_start_lr=5e-6, epochs=10)
    expected = [5e-6, 5e-6, 9.5e-6, 1.4e-5, 1.85e-5, 2.3e-5, 2.75e-5, 3.2e-5, 3.65e-5, 4.1e-5]
    steps_per_epoch = 7
    got = [lr_factor(cfg, e * steps_per_epoch + 3, 70, steps_per_epoch) * cfg.lr for e in range(10)]
    assert got == pytest.approx(expected)


def test_scheduler_drives_the_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, TrainConfig(schedule="warmup_linear", warmup=0.5, lr=1.0), total_steps=4, steps_per_epoch=2)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.5])
    assert not math.isnan(lrs[0])


def test_warmup_steps_counts_updates_whatever_the_run_length():
    # AMP's paper warms up over 10 iterations: the same 10 updates for a 100- or a 1000-update run
    for total in (100, 1000):
        cfg = TrainConfig(schedule="warmup_cosine", warmup=0.5, warmup_steps=10)
        assert lr_factor(cfg, 0, total, 10) == 0.0
        assert lr_factor(cfg, 5, total, 10) == pytest.approx(0.5)
        assert lr_factor(cfg, 10, total, 10) == pytest.approx(1.0)
        assert lr_factor(cfg, total, total, 10) == pytest.approx(0.0, abs=1e-12)
    # longer than the run: the whole run is warm-up
    assert lr_factor(TrainConfig(schedule="warmup_linear", warmup_steps=50), 10, 20, 10) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.warmup_steps=-1"], r"--set train.warmup_steps=-1: key 'train.warmup_steps' must be >= 0"),
        (
            ["train.schedule=epoch_warmup_cosine", "train.warmup_steps=10"],
            r"--set train.warmup_steps=10: key 'train.warmup_steps' must be 0 with schedule 'epoch_warmup_cosine' "
            r"\(set by --set train.schedule=epoch_warmup_cosine\), which counts its warm-up in epochs",
        ),
    ],
)
def test_bad_warmup_steps_is_refused_when_the_config_is_resolved(overrides, message):
    """Before the run folder is made (the schedule is built after config.yaml is written)."""
    with pytest.raises(ConfigError, match=message):
        cfglib.resolve("baseline", "engine-toy", overrides=overrides)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "bertadam"])
def test_exempt_parameters_get_no_weight_decay_in_the_built_optimizer(optimizer):
    """Every optimizer is built from the model's groups: weights decay at train.weight_decay, biases and norms not."""
    class Tiny(torch.nn.Module):
        param_groups = MMERModel.param_groups

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 3)
            self.layernorm = torch.nn.LayerNorm(3)

    model = Tiny()
    groups = build_optimizer(model, TrainConfig(optimizer=optimizer, weight_decay=0.01)).param_groups
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_decay == {0.01: {id(model.proj.weight)}, 0.0: {id(model.proj.bias), id(model.layernorm.weight), id(model.layernorm.bias)}}
