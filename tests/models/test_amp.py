"""AMP: the staged three-backward training step equals Algorithm 1 written as one graph (paper and code options),
weights are restored after APP even on errors, eval skips the masked branch, every Table 2 ablation runs, and
`mmer train --model amp` works through the engine on toy, synthetic and miniature MOSEI data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.func import functional_call

import mmer.models.amp as amp_module
from mmer import config as cfglib
from mmer.benchmark.ablations import load_ablation_file
from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.errors import ConfigError
from mmer.models.amp import AMP, AMPConfig, asymmetric_loss, consistency_kl
from mmer.nn.perturbation import normalized_steps
from tests.models.amp_setup import SPEC, TINY, grads, make_batch, step
from tests.models.helpers import REAL_DATA_PRESETS, cli_train_one_epoch
from tests.engine import toy_data  # noqa: F401  (registers `engine-toy`)

CODE_OPTIONS = dict(
    loss="asl", classifier="shared", scorer_bias="scalar", mask_at="embedding", reverse_into_encoders=True,
    app_params=["all"], app_norm="tensor", app_direction="accumulated", app_kl="softmax",
)  # fmt: skip


class _CleanPass(nn.Module):
    """The whole clean pass from the raw batch (logits), for `functional_call`."""

    def __init__(self, amp: AMP):
        super().__init__()
        self.amp = amp

    def forward(self, batch):
        x, masks = self.amp._inputs(batch)
        hidden = self.amp.encode_unimodal(self.amp.embed_inputs(x, batch), masks)
        return self.amp.fuse_and_classify(hidden, masks)


def algorithm_1_gradients(model: AMP, batch: Batch) -> dict[str, torch.Tensor]:
    """Reference: L_r + rho L_m + sigma L_p as one graph, L_p evaluated at theta + eps (no in-place edits)."""
    cfg = model.cfg
    model.train()
    model.zero_grad(set_to_none=True)
    x, masks = model._inputs(batch)
    emb = model.embed_inputs(x, batch)
    hidden = model.encode_unimodal(emb, masks)
    logits = model.fuse_and_classify(hidden, masks)
    l_r = model.task_loss(logits, batch.labels)
    l_m = model.task_loss(model._masked_logits(x, emb, hidden, masks, batch), batch.labels)
    targets = model._app_targets
    direction_of = l_r if cfg.app_direction == "clean" else l_r + cfg.rho * l_m
    direction = torch.autograd.grad(direction_of, targets, retain_graph=True, allow_unused=True)
    direction = [torch.zeros_like(p) if d is None else d for p, d in zip(targets, direction)]
    names = {id(p): n for n, p in model.named_parameters()}
    moved = {f"amp.{names[id(p)]}": p + s for p, s in zip(targets, normalized_steps(direction, cfg.gamma, cfg.app_norm)) if s is not None}
    noisy = functional_call(_CleanPass(model), moved, (batch,))  # without dropout: the same clean pass at theta + eps
    l_p = consistency_kl(logits, noisy, cfg.app_kl)
    (l_r + cfg.rho * l_m + cfg.sigma * l_p).backward()
    return grads(model)


@pytest.mark.parametrize(
    "options",
    [{}, CODE_OPTIONS, {"masks": False, "topk_gradient": "unrolled"}, {"decoder": False}, {"app_scope": ["unimodal", "multimodal", "decoder"]}, {"activation_checkpointing": True}, {"sigma": 0.5, "rho": 0.3}],
    ids=["paper", "code", "nomask-unrolled", "no-decoder", "perturb-every-module", "checkpointing", "loss-weights"],
)
def test_staged_step_equals_algorithm_1_in_one_graph(options, fabric):
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY, dropout=0.0, **options), SPEC)  # no dropout: both sides see the same network
    batch = make_batch()
    logs = step(model, batch, fabric)
    staged = grads(model)
    reference = algorithm_1_gradients(model, batch)
    assert {"loss_task", "loss_mask", "loss_app", "loss"} <= set(logs)
    for name, g in reference.items():
        assert torch.allclose(staged[name], g, rtol=1e-4, atol=1e-6), name
    assert staged["scorers.text.weight"].abs().sum() > 0  # the masking networks are trained


def test_lean_encoder_layer_computes_pytorchs_layer():
    """The training path (dropout-attention kernel, fast dropout) at a drop probability below the masks' 2^-16
    resolution (it runs, but drops nothing) equals PyTorch's own layer without dropout, forward and backward."""
    torch.manual_seed(0)
    lean = amp_module._encoder(AMPConfig(**TINY, dropout=1e-6), 2)
    amp_module._fast_dropout(lean)
    plain = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True), 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)
    plain.load_state_dict(lean.state_dict())
    x = torch.randn(3, 7, 16)
    padding = torch.arange(7)[None] >= torch.tensor([7, 4, 2])[:, None]
    outs = []
    for net in (lean.train(), plain.train()):
        xi = x.clone().requires_grad_()
        out = net(xi, src_key_padding_mask=padding)
        (out * torch.linspace(-1, 1, 16)).sum().backward()
        outs.append((out.detach(), xi.grad, [p.grad for p in net.parameters()]))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outs[0][2], outs[1][2]))


def test_activation_checkpointing_replays_dropout_exactly(fabric):
    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = AMP(AMPConfig(**TINY, dropout=0.3, activation_checkpointing=recompute), SPEC)
        torch.manual_seed(1)
        step(model, make_batch(), fabric)
        results.append(grads(model))
    for name, g in results[0].items():
        assert torch.equal(results[1][name], g), name  # bit-identical: the option is RESOURCE_ONLY


def test_weights_are_restored_when_the_perturbed_pass_fails(monkeypatch, fabric):
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY), SPEC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    def failing_kl(*args, **kwargs):
        seen["perturbed"] = not torch.equal(model.fusion.layers[0].linear1.weight, before["fusion.layers.0.linear1.weight"])
        raise RuntimeError("perturbed pass failed")

    monkeypatch.setattr(amp_module, "consistency_kl", failing_kl)
    with pytest.raises(RuntimeError, match="perturbed pass failed"):
        step(model, make_batch(), fabric)
    assert seen["perturbed"]
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_app_moves_only_the_paper_targets_by_gamma(monkeypatch, fabric):
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY, gamma=0.5), SPEC)
    names = {n for n, p in model.named_parameters() if any(p is t for t in model._app_targets)}
    assert names == {"fusion.layers.0.self_attn.in_proj_weight", "fusion.layers.0.self_attn.out_proj.weight", "fusion.layers.0.linear1.weight", "fusion.layers.0.linear2.weight"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    moved = {}
    real_kl = amp_module.consistency_kl

    def spy(*args, **kwargs):
        moved.update({n: (p.detach() - before[n]).norm() for n, p in model.named_parameters()})
        return real_kl(*args, **kwargs)

    monkeypatch.setattr(amp_module, "consistency_kl", spy)
    step(model, make_batch(), fabric)
    assert float(torch.stack([moved[n] for n in names]).norm()) == pytest.approx(0.5, rel=1e-4)
    assert all(float(v) == 0.0 for n, v in moved.items() if n not in names)
    code = AMP(AMPConfig(**TINY, app_params=["all"]), SPEC)
    assert len(code._app_targets) == len(list(code.fusion.parameters()))  # incl. biases and LayerNorms


def test_evaluation_skips_the_masked_branch(monkeypatch):
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY), SPEC).eval()
    monkeypatch.setattr(model, "mask_indicator", lambda *a: pytest.fail("masked branch ran at evaluation"))
    probs = model.predict_proba(make_batch())
    assert probs.shape == (5, 3) and ((probs > 0) & (probs < 1)).all()


def test_mask_covers_the_ratio_of_real_units_and_never_padding():
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY, mask_ratio=0.5), SPEC).train()
    batch = make_batch()
    x, masks = model._inputs(batch)
    hidden = model.encode_unimodal(model.embed_inputs(x, batch), masks)
    for source in ("adversarial", "random"):
        model.cfg.mask_source = source
        a = model.mask_indicator(hidden, masks)
        for m in model.modalities:
            expected = torch.floor(0.5 * masks[m].sum(1) + 0.5)
            assert torch.allclose(a[m].sum(1), expected, atol=1e-4), (source, m)
            assert (a[m][~masks[m]] == 0).all()


def test_gradient_reversal_flips_only_the_masking_networks(fabric):
    results = {}
    for reverse in (True, False):
        torch.manual_seed(0)
        model = AMP(AMPConfig(**TINY, dropout=0.0, app=False, gradient_reversal=reverse), SPEC)
        step(model, make_batch(), fabric)
        results[reverse] = grads(model)
    on, off = results[True], results[False]
    for name in on:
        if name.startswith(("scorers.", "scorer_bias.")):
            assert torch.allclose(on[name], -off[name], atol=1e-7) and on[name].abs().sum() > 0, name
        else:
            assert torch.allclose(on[name], off[name], atol=1e-7), name


def test_masking_networks_get_minus_lambda_times_the_plain_gradient(monkeypatch, fabric):
    """The reversal layer hands the scorers -grl_lambda x the gradient they would get without it (Eq. 4, 11: they
    ascend L_m), not merely the opposite of the "-adversarial gradient reversal" ablation."""
    results = {}
    for reversal in (True, False):
        if not reversal:
            monkeypatch.setattr(amp_module, "grad_reverse", lambda x, lambd: x)  # the plain gradient
        torch.manual_seed(0)
        model = AMP(AMPConfig(**TINY, dropout=0.0, app=False, grl_lambda=0.25), SPEC)
        step(model, make_batch(), fabric)
        results[reversal] = grads(model)
    scorers = [n for n in results[True] if n.startswith(("scorers.", "scorer_bias."))]
    for name in scorers:
        torch.testing.assert_close(results[True][name], -0.25 * results[False][name], rtol=1e-5, atol=1e-10, msg=name)
    assert all(results[False][n].abs().sum() > 0 for n in scorers)


def test_reverse_into_encoders_decides_whether_the_score_path_reaches_the_encoders(monkeypatch, fabric):
    """Eq. 11 (default) reverses theta_M only: the scorers read H^m detached, so the projections and uni-modal
    encoders get exactly the gradient they get with the score path cut (only the masked pass's own L_m). With
    `reverse_into_encoders: true` (code) the reversed gradient also reaches them through the scorer input."""

    def run(reverse: bool, cut: bool = False) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = AMP(AMPConfig(**TINY, dropout=0.0, app=False, reverse_into_encoders=reverse), SPEC)
        with monkeypatch.context() as patch:
            if cut:
                patch.setattr(amp_module, "grad_reverse", lambda x, lambd: x.detach())
            step(model, make_batch(), fabric)
        return grads(model)

    cut, paper, code = run(False, cut=True), run(False), run(True)
    for m in ("text", "visual", "audio"):
        names = [n for n in paper if n.startswith((f"unimodal.{m}.", f"embed.{m}."))]
        for name in names:
            torch.testing.assert_close(paper[name], cut[name], rtol=1e-5, atol=1e-9, msg=name)
        assert max(float((code[n] - paper[n]).abs().max()) for n in names) > 1e-6, m
    batch = make_batch()
    for reverse in (False, True):  # the scorer input itself: detached unless the option is on
        hidden = {m: torch.randn(*v.shape, 16, requires_grad=True) for m, v in batch.masks.items()}
        a = AMP(AMPConfig(**TINY, reverse_into_encoders=reverse), SPEC).mask_indicator(hidden, batch.masks)
        g = torch.autograd.grad(sum((v * torch.randn_like(v)).sum() for v in a.values()), list(hidden.values()), allow_unused=True)
        assert [x is not None for x in g] == [reverse] * 3, reverse


@pytest.mark.parametrize("mask_at", ["input", "embedding"])
def test_mask_at_decides_what_the_soft_mask_multiplies(mask_at, monkeypatch):
    """`input` (Eq. 10) masks the raw features before the projection, x (1 - A); `embedding` (code) masks the
    projected embedding: the masked logits are E^m and D applied to exactly that, and the two differ."""
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY, mask_at=mask_at), SPEC).eval()
    batch = make_batch()
    x, masks = model._inputs(batch)
    emb = model.embed_inputs(x, batch)
    a = {m: torch.rand(v.shape) * v for m, v in masks.items()}  # any soft mask on the real steps
    monkeypatch.setattr(model, "mask_indicator", lambda *args: a)
    keep = {m: 1.0 - a[m][..., None] for m in a}
    at_input = model.fuse_and_classify(model.encode_unimodal(model.embed_inputs({m: keep[m] * x[m] for m in x}, batch), masks), masks)
    at_embedding = model.fuse_and_classify(model.encode_unimodal({m: keep[m] * emb[m] for m in emb}, masks), masks)
    expected, other = (at_input, at_embedding) if mask_at == "input" else (at_embedding, at_input)
    masked = model._masked_logits(x, emb, model.encode_unimodal(emb, masks), masks, batch)
    torch.testing.assert_close(masked, expected)
    assert (masked - other).abs().max() > 1e-3


@pytest.mark.parametrize("options", [{}, {"decoder": False}], ids=["decoder", "pooled-head"])
def test_padding_does_not_change_predictions_unless_masks_are_off(options):
    """Padding is never data with `masks: true`: attention skips it and the "-D" head (`decoder: false`) pools
    E^m over real steps only."""
    torch.manual_seed(0)
    batch = make_batch()
    noisy = batch.replace(features={m: torch.where(batch.masks[m][..., None], x, torch.randn_like(x)) for m, x in batch.features.items()})
    model = AMP(AMPConfig(**TINY, **options), SPEC).eval()
    assert torch.allclose(model.predict_proba(batch), model.predict_proba(noisy), atol=1e-6)
    model.cfg.masks = False
    assert not torch.allclose(model.predict_proba(batch), model.predict_proba(noisy), atol=1e-6)


def test_four_modalities_missing_ones_and_multi_party_targets(fabric):
    spec = DataSpec("four", ("x", "y"), tuple(ModalitySpec(n, d, 6) for n, d in (("com", 5), ("lyr", 5), ("img", 8), ("aud", 3))), multi_party=True)
    grid = torch.zeros(4, 6, dtype=torch.long)
    target = torch.zeros(4, 6, dtype=torch.bool)
    target[:, 2] = True
    masks = {m.name: torch.ones(4, 6, dtype=torch.bool) for m in spec.modalities}
    masks["img"][1] = False  # sample 1 has no image
    batch = make_batch(spec, b=4).replace(masks=masks, party=PartyStructure(grid, grid, target))
    torch.manual_seed(0)
    model = AMP(AMPConfig(**TINY, modality_embeddings=True, learned_positions=True), spec)
    logs = step(model, batch, fabric)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    model.eval()
    moved = batch.replace(party=PartyStructure(grid, grid, target.roll(1, dims=1)))
    assert not torch.allclose(model.predict_proba(batch), model.predict_proba(moved))  # the target marker matters


def test_asymmetric_loss_matches_a_hand_computation():
    p = torch.tensor([[0.9, 0.3, 0.02]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    # positive: (1 - 0.9)^1 * log 0.9; negative 0.3: (0.3 - 0.05)^2 * log(0.75); negative 0.02: below the clip -> 0
    expected = -1000 / 3 * (0.1 * torch.log(torch.tensor(0.9)) + 0.25**2 * torch.log(torch.tensor(0.75)))
    assert float(asymmetric_loss(p, y)) == pytest.approx(float(expected), rel=1e-6)


def test_consistency_kl_variants():
    clean = torch.tensor([[0.3, -1.0]])
    noisy = torch.tensor([[0.5, -0.2]])
    p, q = torch.sigmoid(clean), torch.sigmoid(noisy)
    bernoulli = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    assert float(consistency_kl(clean, noisy, "bernoulli")) == pytest.approx(float(bernoulli), rel=1e-5)
    target = torch.softmax(p, -1)  # the code: F.kl_div(log_softmax(q), softmax(p)) with reduction "mean"
    code = (target * (target.log() - torch.log_softmax(q, -1))).mean()
    assert float(consistency_kl(clean, noisy, "softmax")) == pytest.approx(float(code), rel=1e-4)
    assert float(consistency_kl(clean, clean, "bernoulli")) == pytest.approx(0.0, abs=1e-7)


def apply_overrides(base: AMPConfig, overrides: list[str]) -> AMPConfig:
    data = {"model": cfglib.to_dict(base)}
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    return cfglib.from_dict(AMPConfig, data["model"], "model")


def table2_rows() -> dict[str, list[str]]:
    return yaml.safe_load((resources.files("mmer") / "configs" / "ablations" / "amp_table2.yaml").read_text())


@pytest.mark.parametrize("row", list(table2_rows()))
def test_every_table2_ablation_runs_one_step(row, fabric):
    torch.manual_seed(0)
    model = AMP(apply_overrides(AMPConfig(**TINY), table2_rows()[row]), SPEC)
    logs = step(model, make_batch(), fabric)
    assert logs and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    g = grads(model)
    assert all(torch.isfinite(v).all() for v in g.values()) and any(v.abs().sum() > 0 for v in g.values())


def test_table2_file_loads_in_the_benchmark_runner():
    table = load_ablation_file("amp_table2")
    assert table.model == "amp" and len(table.rows) == 18
    assert table.rows[0].overrides == () and dict((r.name, r.overrides) for r in table.rows)["-ATM"] == ("model.atm=false",)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="exclude_modalities: unknown modality 'txt'"):
        AMP(AMPConfig(**TINY, exclude_modalities=["txt"]), SPEC)
    with pytest.raises(ConfigError, match="replaces ATM and APP"):
        AMP(AMPConfig(**TINY, input_perturbation="fgsm"), SPEC)
    with pytest.raises(ConfigError, match="app_scope"):
        AMP(AMPConfig(**TINY, fusion_encoder=False), SPEC)
    with pytest.raises(ConfigError, match="mask_ratio"):
        AMP(AMPConfig(**TINY, mask_ratio=1.5), SPEC)


def test_presets_parse_and_say_where_values_come_from():
    folder = resources.files("mmer") / "configs" / "amp"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    paper_and_synthetic = ("mosei-aligned", "mosei-unaligned", "m3ed", "memor-primary", "memor-fine", "synth-party", "synth-dyadic")
    assert names == sorted(f"{d}.yaml" for d in (*paper_and_synthetic, *REAL_DATA_PRESETS))
    for name in names:
        text = (folder / name).read_text()
        assert text.lstrip().startswith("#")
        cfg = cfglib.resolve("amp", name[: -len(".yaml")])
        assert isinstance(cfg.model, AMPConfig)
    paper = cfglib.resolve("amp", "mosei-aligned")
    assert (paper.model.encoder_layers, paper.data.batch_size, paper.train.epochs, paper.train.lr) == (4, 64, 10, 5e-5)
    assert paper.train.select_metric == "micro_f1"


TINY_SETS = [f"model.{k}={v}" for k, v in TINY.items()] + ["model.sinkhorn_iters=20"]


def cli_train(out: Path, dataset: str, *extra: str, root: Path | None = None) -> None:
    cli_train_one_epoch("amp", out, dataset, [*TINY_SETS, *extra], root)


def test_mmer_train_amp_on_engine_toy_and_synthetic_presets(tmp_path):
    cli_train(tmp_path / "toy", "engine-toy", "data.batch_size=16")
    cli_train(tmp_path / "dyadic", "synth-dyadic", "data.options.size=tiny", "data.batch_size=8")
    cli_train(tmp_path / "party", "synth-party", "data.options.size=tiny", "data.batch_size=8")


def test_mmer_train_amp_on_miniature_mosei_files(tmp_path):
    from tests.data.official_files import write_mosei_aligned

    write_mosei_aligned(tmp_path / "train_valid_test.pt")
    cli_train(tmp_path / "run", "mosei-aligned", "data.batch_size=4", root=tmp_path)
