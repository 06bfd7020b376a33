"""TAILOR: Eq. 8-15 prediction and Eq. 4-7, 16-17 losses recomputed by hand from the model's pieces, gradients to
every block, the gradient reversal, padding, missing modalities, multi-party targets, CTC on unaligned lengths,
clear errors, every Table 3 ablation for one step, presets, the report's analysis keys, and `mmer train --model
tailor` on synthetic data and miniature MOSEI files."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mmer import config as cfglib
from mmer.benchmark.ablations import load_ablation_file
from mmer.cli import main
from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.data.load import load_dataset
from mmer.engine.trainer import load_run
from mmer.errors import ConfigError
from mmer.models.tailor import TAILOR, Refinement, TAILORConfig, UniformContext
from mmer.report import analysis
from tests.models.helpers import REAL_DATA_PRESETS, cli_train_one_epoch, train_step, with_missing_modalities
from tests.models.tailor_setup import NO_DROPOUT, SPEC, TINY, A, T, V, make_batch, model_for, scrambled

CODE = dict(discriminator="mlp", orth_pairs="code", common_semantic="code", classifier="shared", concat_order="code")
DATASETS = ("mosei-aligned", "mosei-unaligned", "m3ed", "memor-primary", "memor-fine", "synth-party", "synth-dyadic")
COMPONENTS = {"ml", "adv_common", "adv_private", "orth", "cml"}


pytestmark = pytest.mark.usefixtures("one_thread")


def finite(logs: dict[str, float]) -> bool:
    return bool(logs) and all(torch.isfinite(torch.tensor(v)) for v in logs.values())


# ------------------------------------------------------------------------------------- equations by hand


def by_hand(model: TAILOR, batch: Batch) -> dict[str, object]:
    """Eq. 1 and 8-15 written out from the model's parameters (no dropout anywhere)."""
    hidden, masks, _ = model.extract(batch)
    p = [model.private.nets[i](h) for i, h in enumerate(hidden)]  # P^m [B, L, d]
    c = [model.generator.net(h) for h in hidden]  # C^m
    c_sum = sum(ci * mi[..., None] for ci, mi in zip(c, masks))  # C, Eq. 8
    c_mask = masks[T] | masks[V] | masks[A]
    code = model.cfg.concat_order == "code"

    def cme(i: int, first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, mask = torch.cat([first[0], second[0]], 1), torch.cat([first[1], second[1]], 1)
        types = torch.cat([torch.zeros_like(first[1], dtype=torch.long), torch.ones_like(second[1], dtype=torch.long)], 1)
        return model.cross[i](x, mask, types), mask

    pv, pa, pt = (p[V], masks[V]), (p[A], masks[A]), (p[T], masks[T])
    if code:  # the official code's [P^a; P^v] -> [P^t; Z^va] -> [Z^vat; C]
        z = cme(1, pt, cme(0, pa, pv))
    else:  # Eq. 8: CME(P^v, P^a) -> CME(Z^va, P^t) -> CME(Z^vat, C)
        z = cme(1, cme(0, pv, pa), pt)
    memory, memory_mask = cme(2, z, (c_sum, c_mask))  # M [B, 4L, d]

    layer = model.decoder_layers[0]
    att, b = layer.self_attention.attention, batch.size
    emb = model.label_embedding.norm(model.label_embedding.embedding.weight)  # L [C, d]
    n_labels, d, h, dh = emb.shape[0], emb.shape[1], att.num_heads, att.head_dim

    def heads(x: Tensor, linear: torch.nn.Linear) -> Tensor:  # [..., N, d] -> [..., h, N, dh]
        return linear(x).unflatten(-1, (h, dh)).transpose(-3, -2)

    sigma = torch.softmax(heads(emb, att.query) @ heads(emb, att.key).transpose(-1, -2) / dh**0.5, dim=-1)  # Eq. 10-11 [h, C, C]
    s = (sigma @ heads(emb, att.value)).transpose(0, 1).reshape(n_labels, d)  # Eq. 11, heads concatenated
    labels = layer.self_attention.norm(emb + layer.self_attention.dense(s)).expand(b, -1, -1)  # Eq. 12 [B, C, d]
    cross = layer.cross_attention.attention
    scores = heads(labels, cross.query) @ heads(memory, cross.key).transpose(-1, -2) / dh**0.5  # [B, h, C, 4L]
    dep = torch.softmax(scores.masked_fill(~memory_mask[:, None, None, :], float("-inf")), -1) @ heads(memory, cross.value)
    dep = layer.cross_attention.dense(dep.transpose(1, 2).reshape(b, n_labels, d))  # Eq. 13 Dep_{M->L}
    hat = layer.cross_attention.norm(labels + dep)  # Eq. 14: L^ = LN(L + Dep)
    tailored = layer.ffn(hat)  # H = LN(L^ + FFN(L^))
    logits = (tailored * model.classifier_weight).sum(-1) + model.classifier_bias  # Eq. 15 (W_k, b_k; shared: one row)
    return dict(hidden=hidden, masks=masks, p=p, c=c, logits=logits, sigma=sigma)


@pytest.mark.parametrize("options", [{}, CODE], ids=["paper", "code"])
def test_prediction_is_eq8_to_15_from_the_models_pieces(options):
    model = scrambled(model_for(**options)).eval()
    batch = make_batch()
    probs = model.predict_proba(batch)
    hand = by_hand(model, batch)
    torch.testing.assert_close(probs, torch.sigmoid(hand["logits"]))
    assert probs.shape == (6, 4) and ((probs > 0) & (probs < 1)).all()
    assert model.fusion_order == ["visual", "audio", "text", "common"]
    assert model.classifier_weight.shape == ((1, 16) if options else (4, 16))  # Eq. 15 per label | code: shared
    # Fig. 7 matrix: the label self-attention weights sigma(r), mean over heads, row label -> column label
    torch.testing.assert_close(model.label_correlation(), hand["sigma"].mean(0).T)
    torch.testing.assert_close(model.label_correlation().sum(0), torch.ones(4))
    torch.testing.assert_close(model.predict_proba(batch), probs)  # evaluation is deterministic


def masked_ce(logits: Tensor, target: int, mask: Tensor) -> Tensor:
    """Mean over the real tokens of -log softmax(logits)[target]."""
    nll = -torch.log_softmax(logits, -1)[..., target]  # [B, L]
    return nll[mask].sum() / mask.sum().clamp(min=1)


def orth(x: Tensor, y: Tensor, mx: Tensor, my: Tensor) -> Tensor:
    """(1/B) sum_b ||X_b Y_b^T||_F^2 over real tokens (Eq. 6 with a positive sign)."""
    gram = torch.einsum("bid,bjd->bij", x * mx[..., None], y * my[..., None])
    return gram.pow(2).sum((1, 2)).mean()


@pytest.mark.parametrize("options", [{}, CODE], ids=["paper", "code"])
def test_training_losses_match_the_equations(options, fabric):
    model = model_for(**NO_DROPOUT, **options).train()
    model.logit_dropout.p = 0.0  # the code's dropout on the logits (shared classifier, common head)
    model.common_head.dropout.p = 0.0
    batch = make_batch()
    y = batch.labels
    out = model(batch)
    hand = by_hand(model, batch)
    p, c, masks = hand["p"], hand["c"], hand["masks"]
    if options:
        disc = model.discriminator.net  # the code's MLP
    else:  # Eq. 2: I^T W + b with a position-wise bias b [L, M]
        w, bias, pos = model.discriminator.net.weight, model.discriminator.net.bias, model.discriminator.position_bias
        disc = lambda x: x @ w.T + bias + pos[: x.shape[1]]  # noqa: E731
    expected = {
        "ml": F.binary_cross_entropy_with_logits(hand["logits"], y),  # Eq. 16 (mean)
        "adv_common": sum(masked_ce(disc(c[m]), m, masks[m]) for m in range(3)),  # Eq. 4 (value; GRL only in backward)
        "adv_private": sum(masked_ce(disc(p[m]), m, masks[m]) for m in range(3)),  # Eq. 5
        "orth": sum(orth(c[m], p[m], masks[m], masks[m]) for m in range(3)),  # Eq. 6, positive sign
    }
    head = model.common_head.classifier
    if options:  # the code: private-private pairs too; L_cml from token 0 of sum_m C^m
        expected["orth"] = expected["orth"] + sum(orth(p[i], p[j], masks[i], masks[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
        expected["cml"] = F.binary_cross_entropy_with_logits(head(torch.stack(c).sum(0)[:, 0]), y)
    else:  # Eq. 7: one prediction per C^m (mean over its real steps), a sample lacking m left out of that term
        present = [mk.any(1) for mk in masks]
        pooled = [(ci * mk[..., None]).sum(1) / mk.sum(1, keepdim=True).clamp(min=1) for ci, mk in zip(c, masks)]
        expected["cml"] = sum(F.binary_cross_entropy_with_logits(head(pooled[m])[present[m]], y[present[m]]) for m in range(3))
    assert set(out.losses) == COMPONENTS
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name], value, msg=name)
    assert float(out.losses["orth"].detach()) > 0
    # Eq. 17: L_ml + alpha (L_C + L_P) + beta L_diff + gamma L_cml, with the paper's weights
    logs = train_step(model, batch, fabric)
    total = logs["loss_ml"] + 0.01 * (logs["loss_adv_common"] + logs["loss_adv_private"]) + 5e-6 * logs["loss_orth"] + 0.5 * logs["loss_cml"]
    assert logs["loss"] == pytest.approx(total, rel=1e-6)
    assert model.loss_weights() == {"adv_common": 0.01, "adv_private": 0.01, "orth": 5e-6, "cml": 0.5, "ctc": 0.5}


def test_orthogonality_by_hand_numbers():
    """One sample, two real tokens: C = [[1, 0], [0, 2]], P = [[3, 0], [1, 1]] -> C P^T = [[3, 1], [0, 2]], sum of
    squares 14; the padded third token is left out."""
    model = model_for(hidden_size=2, num_heads=1, intermediate_size=2, **NO_DROPOUT).train()
    c = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    p = torch.tensor([[[3.0, 0.0], [1.0, 1.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False]])
    losses = model._refinement_losses(Refinement([c] * 3, [mask] * 3, [p] * 3, [c] * 3), torch.zeros(1, 4))
    assert float(losses["orth"]) == pytest.approx(3 * 14.0)


# ------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("options", [{}, CODE], ids=["paper", "code"])
def test_gradients_reach_every_trainable_block(options, fabric):
    model = model_for(**options)
    assert finite(train_step(model, make_batch(), fabric))
    silent = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert silent == []


@pytest.mark.parametrize("lambd", [1.0, 0.5])
def test_gradient_reversal_flips_the_common_generators_discriminator_gradient(lambd):
    """L_C trains D normally, while G and everything below it receive -lambda times the gradient of L_C."""
    model = model_for(**NO_DROPOUT, grl_lambda=lambd).train()
    batch = make_batch()
    generator = list(model.generator.parameters())
    below = list(model.encoders["text"].parameters())  # the uni-modal extractor feeding G
    disc = list(model.discriminator.parameters())
    params = generator + below + disc
    adv_common = model(batch).losses["adv_common"]
    reversed_ = torch.autograd.grad(adv_common, params, allow_unused=True)
    hidden, masks, _ = model.extract(batch)
    plain = model.discriminator.modality_loss(model.generator(hidden), masks)  # the same loss without reversal
    torch.testing.assert_close(adv_common, plain)  # the reversal is the identity in the forward pass
    straight = torch.autograd.grad(plain, params, allow_unused=True)
    n_g, n_b = len(generator), len(below)
    for i, (r, s) in enumerate(zip(reversed_, straight)):
        if i < n_g + n_b:
            torch.testing.assert_close(r, -lambd * s)
        else:
            torch.testing.assert_close(r, s)
    assert all(float(g.abs().sum()) > 0 for g in reversed_[:n_g] + reversed_[n_g + n_b :])
    # the private loss has no reversal and never reaches G
    p_grads = torch.autograd.grad(model(batch).losses["adv_private"], generator + list(model.private.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in p_grads[:n_g])
    assert all(float(g.abs().sum()) > 0 for g in p_grads[n_g:])


def test_recomputing_layers_keeps_gradients(fabric):
    """recompute_cross / recompute_unimodal change memory only: the same gradients with dropout 0.3 on (the
    checkpointing must replay the same masks)."""
    grads = []
    for recompute in (False, True):
        model = model_for(recompute_cross=recompute, recompute_unimodal=recompute)
        torch.manual_seed(1)
        train_step(model, make_batch(), fabric)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert torch.equal(grads[1][name], g), name  # bit-identical: the option is RESOURCE_ONLY


# ------------------------------------------------------------------------------------- data situations


@pytest.mark.parametrize(
    "options",
    [{}, CODE, {"decoder": "identical"}, {"label_modal_attention": False}, {"amr": False}],
    ids=["paper", "code", "identical", "uniform-context", "no-amr"],
)
def test_padding_does_not_change_predictions(options):
    """Neither the prediction nor the report's analysis (C^m, P^m and D's probabilities pooled over real steps)
    sees padding."""
    batch = make_batch()
    noisy = batch.replace(features={m: torch.where(batch.masks[m][..., None], x, torch.randn_like(x) * 10) for m, x in batch.features.items()})
    model = scrambled(model_for(**options)).eval()
    probs = model.predict_proba(batch)
    assert probs.std(0).mean() > 0.01  # the input matters
    torch.testing.assert_close(model.predict_proba(noisy), probs)
    torch.testing.assert_close(model.analysis(noisy), model.analysis(batch))


def test_missing_modalities_never_give_nan(fabric):
    model = model_for()
    batch = with_missing_modalities(make_batch())  # sample 3 has nothing, no sample has audio
    assert finite(train_step(model, batch, fabric))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(model.eval().predict_proba(batch)).all()
    assert all(torch.isfinite(v).all() for v in model.analysis(batch).values())


def party_batch() -> tuple[DataSpec, Batch]:
    spec = DataSpec("party", ("x", "y", "z"), tuple(ModalitySpec(n, d, 6) for n, d in (("text", 5), ("visual", 4), ("audio", 3))), personality_dim=2, multi_party=True)
    person = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4)
    segment = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    target = torch.zeros(4, 6, dtype=torch.bool)
    target[:, 4] = True
    batch = make_batch(spec, b=4).replace(party=PartyStructure(person, segment, target), personality=torch.randn(4, 6, 2))
    for m in ("text", "audio"):
        batch.masks[m][:, 3:] = False  # the listener (person 1) has no text or audio, like synth-party
        batch.features[m][:, 3:] = 0.0
    batch.masks["visual"][0, 4] = False  # sample 0's target has no observation at all
    batch.features["visual"][0, 4] = 0.0
    return spec, batch


def test_multi_party_target_marker_personality_and_placeholder_target(fabric):
    spec, batch = party_batch()
    model = model_for(spec, personality=True)
    assert model.modalities == ("text", "visual", "audio", "personality")
    assert model.fusion_order == ["visual", "audio", "text", "personality", "common"]
    assert finite(train_step(model, batch, fabric))
    assert float(model.encoders["personality"].embedding.projection.weight.grad.abs().sum()) > 0
    assert float(model.target_marker.embedding.grad.abs().sum()) > 0
    scrambled(model).eval()
    probs = model.predict_proba(batch)
    assert torch.isfinite(probs).all()
    moved = batch.replace(party=PartyStructure(batch.party.person, batch.party.segment, batch.party.target.roll(-3, dims=1)))
    assert (model.predict_proba(moved) - probs).abs().max() > 1e-3  # the target, even without features, locates itself
    out = model.analysis(batch)  # D has 4 classes; the report gets the 3 data modalities, rows renormalised
    assert out["discriminator_probs"].shape == (4, 3, 3) and out["common"].shape == (4, 3, 16)
    torch.testing.assert_close(out["discriminator_probs"].sum(-1), torch.ones(4, 3))


UNALIGNED = DataSpec("unaligned", ("a", "b"), (ModalitySpec("text", 6, 5), ModalitySpec("visual", 4, 20), ModalitySpec("audio", 3, 20)))


def unaligned_batch() -> Batch:
    lengths = {"text": [5, 4, 5, 3], "visual": [20, 12, 3, 8], "audio": [20, 7, 9, 5]}  # sample 2: 3 visual frames < 5
    g = torch.Generator().manual_seed(3)
    features, masks = {}, {}
    for m in UNALIGNED.modalities:
        mask = torch.arange(m.max_len)[None] < torch.tensor(lengths[m.name])[:, None]
        features[m.name] = torch.randn(4, m.max_len, m.dim, generator=g) * mask[..., None]
        masks[m.name] = mask
    return Batch(features, masks, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), list("abcd"), torch.arange(4))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ctc_pseudo_alignment_on_unaligned_lengths(reduction, fabric):
    model = model_for(UNALIGNED, ctc=True, ctc_reduction=reduction)
    assert set(model.aligners) == {"visual", "audio"} and model.aligners["visual"].out_len == 5
    assert model.encoders["visual"].embedding.position.num_embeddings == 5
    assert model.cross[2].embedding.position.num_embeddings == 4 * 5
    batch = unaligned_batch()
    model.train()
    out = model(batch)
    assert set(out.losses) == COMPONENTS | {"ctc"}
    targets = torch.arange(1, 6)
    expected = torch.zeros(())
    for m in ("visual", "audio"):  # per sample: CTC of its real frames against 1..5 (blank 0); too-short samples out
        x = model.encoders[m].input_norm(batch.features[m])
        logits = model.aligners[m](x, batch.masks[m]).logits  # [B, T, 6]
        per_sample = [
            F.ctc_loss(torch.log_softmax(logits[b, :n], -1)[:, None], targets[None], (n,), (5,), reduction="sum")
            for b, n in enumerate(batch.masks[m].sum(1).tolist())
            if n >= 5
        ]
        expected = expected + (sum(per_sample) if reduction == "sum" else sum(per_sample) / len(per_sample))
    torch.testing.assert_close(out.losses["ctc"], expected)
    assert finite(train_step(model, batch, fabric))
    assert float(model.aligners["audio"].lstm.weight_ih_l0.grad.abs().sum()) > 0
    probs = model.eval().predict_proba(batch)
    assert probs.shape == (4, 2) and torch.isfinite(probs).all()


def test_weight_decay_groups_follow_the_official_code():
    """BertAdam decays every name without bias/LayerNorm, the input LayerNorm weight included (ref §3.2)."""
    model = model_for()
    no_decay = {id(p) for p in model.param_groups(0.01)[1]["params"]}
    decayed = {n for n, p in model.named_parameters() if id(p) not in no_decay}
    assert {"encoders.text.input_norm.weight", "classifier_weight", "label_embedding.embedding.weight", "cross.0.embedding.token_type.weight"} <= decayed
    assert not {"classifier_bias", "discriminator.position_bias", "encoders.text.embedding.norm.weight", "label_embedding.norm.weight",
                "decoder_layers.0.ffn.norm.weight", "encoders.text.input_norm.bias"} & decayed  # fmt: skip


def test_bad_settings_are_clear_errors():
    party, _ = party_batch()
    cases = [
        ({"num_heads": 3}, SPEC, "hidden_size=16 must be divisible by model.num_heads=3"),
        ({"cross_layers": 0}, SPEC, "model.cross_layers must be >= 1, got 0"),
        ({"representations": ["shared"]}, SPEC, "model.representations must be a non-empty list of distinct common, private"),
        ({"fusion_order": ["visual", "speech", "common"]}, SPEC, "model.fusion_order .* unknown: speech"),
        ({"fusion_order": ["visual", "visual", "text"]}, SPEC, "at most once each"),
        ({"layers": {"lyrics": 1}}, SPEC, r"model.layers names \['lyrics'\]"),
        ({"decoder": "label-guided"}, SPEC, "unknown model.decoder 'label-guided' \\(did you mean 'label_guided'\\?\\)"),
        ({"personality": True}, SPEC, "needs personality traits"),
        ({"ctc": True}, party, "multi-party"),
        ({"ctc": True, "ctc_reference": "words"}, UNALIGNED, "model.ctc_reference 'words' is not a modality"),
        ({}, UNALIGNED, "sequences of different lengths \\(text 5, visual 20, audio 20\\).*model.ctc=true"),
    ]
    for options, spec, match in cases:
        with pytest.raises(ConfigError, match=match):
            model_for(spec, **options)


# ------------------------------------------------------------------------------------- ablations (Table 3)


TABLE3 = load_ablation_file("tailor_table3")
ROWS = {row.name: list(row.overrides) for row in TABLE3.rows}
EXPECTED = {
    "(1) w/o AMR": {"ml"},
    "(2) w/ L_adv": {"ml", "adv_common", "adv_private"},
    "(3) w/ L_adv, L_diff": {"ml", "adv_common", "adv_private", "orth"},
    "(4) w/ C^{v,a,t}": {"ml", "adv_common", "cml"},
    "(5) w/ P^{v,a,t}": {"ml", "adv_private"},
    "(6) psi = [v, t, a, c]": COMPONENTS,
    "(7) psi = [a, t, v, c]": COMPONENTS,
    "(8) w/o MTE": COMPONENTS,
    "(9) w/ identical": COMPONENTS,
    "(10) w/ LE": COMPONENTS,
    "(11) w/ LE, LC": COMPONENTS,
    "(12) TAILOR": COMPONENTS,
}


def apply_overrides(overrides: list[str]) -> TAILORConfig:
    data = {"model": cfglib.to_dict(TAILORConfig(**TINY))}
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    return cfglib.from_dict(TAILORConfig, data["model"], "model")


def test_table3_file_loads_in_the_benchmark_runner():
    assert TABLE3.model == "tailor" and list(ROWS) == list(EXPECTED)
    assert ROWS["(12) TAILOR"] == [] and ROWS["(1) w/o AMR"] == ["model.amr=false"]


@pytest.mark.parametrize("row", list(EXPECTED))
def test_every_table3_ablation_runs_one_training_step(row, fabric):
    torch.manual_seed(0)
    model = TAILOR(apply_overrides(ROWS[row]), SPEC)
    model.train()
    assert set(model(make_batch()).losses) == EXPECTED[row]
    assert finite(train_step(model, make_batch(), fabric))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert float(model.encoders["text"].embedding.projection.weight.grad.abs().sum()) > 0
    probs = model.eval().predict_proba(make_batch())
    assert probs.shape == (6, 4) and torch.isfinite(probs).all()
    # what each row changes
    order = {"(1) w/o AMR": ["visual", "audio", "text"], "(4) w/ C^{v,a,t}": ["visual", "audio", "text"], "(5) w/ P^{v,a,t}": ["visual", "audio", "text"],
             "(6) psi = [v, t, a, c]": ["visual", "text", "audio", "common"], "(7) psi = [a, t, v, c]": ["audio", "text", "visual", "common"]}  # fmt: skip
    assert model.fusion_order == order.get(row, ["visual", "audio", "text", "common"])
    assert (model.discriminator is None) == (row == "(1) w/o AMR")
    assert (model.private is None) == (row in ("(1) w/o AMR", "(4) w/ C^{v,a,t}"))
    assert (model.generator is None) == (row in ("(1) w/o AMR", "(5) w/ P^{v,a,t}"))
    assert (model.cross[0].embedding.token_type is None) == (row == "(8) w/o MTE")
    assert (model.label_embedding is None) == (row == "(9) w/ identical")
    if model.label_embedding is not None:
        layer = model.decoder_layers[0]
        assert (layer.self_attention is None) == (row == "(10) w/ LE")
        assert isinstance(layer.cross_attention, UniformContext) == (row in ("(10) w/ LE", "(11) w/ LE, LC"))
        assert ("label_correlation" in model.analysis(make_batch())) == (row != "(10) w/ LE")


def test_fusion_order_fills_in_what_it_does_not_name():
    assert model_for(fusion_order=["text", "visual"]).fusion_order == ["text", "visual", "audio", "common"]
    assert model_for(fusion_order=["common", "audio"]).fusion_order == ["text", "visual", "common", "audio"]
    spec, _ = party_batch()
    row = TAILOR(apply_overrides([*ROWS["(6) psi = [v, t, a, c]"], "model.personality=true"]), spec)
    assert row.fusion_order == ["visual", "text", "audio", "personality", "common"]


def test_without_label_modal_attention_every_label_reads_the_same_mean_of_m():
    model = TAILOR(apply_overrides(ROWS["(11) w/ LE, LC"]), SPEC).eval()
    batch = make_batch()
    context = model.decoder_layers[0].cross_attention
    labels = torch.zeros(6, 4, 16)
    memory, mask = torch.randn(6, 10, 16), torch.arange(10)[None] < torch.tensor([10, 3, 5, 1, 7, 2])[:, None]
    pooled = (memory * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(context(labels, memory, mask), context.norm(context.dense(context.value(pooled))[:, None].expand(-1, 4, -1)))
    assert model.predict_proba(batch).shape == (6, 4)


# ------------------------------------------------------------------------------------- presets, CLI, report


def test_presets_for_every_dataset_resolve_and_say_where_values_come_from(tiny_party, tiny_dyadic):
    folder = resources.files("mmer") / "configs" / "tailor"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(f"{d}.yaml" for d in (*DATASETS, *REAL_DATA_PRESETS))
    for name in names:
        assert (folder / name).read_text().lstrip().startswith("#")
        cfg = cfglib.resolve("tailor", name[: -len(".yaml")])
        assert isinstance(cfg.model, TAILORConfig) and cfg.model_name == "tailor"
    paper = cfglib.resolve("tailor", "mosei-aligned")
    m = paper.model
    assert (m.hidden_size, m.num_heads, m.intermediate_size, m.layers, m.cross_layers, m.decoder_layers) == (256, 8, 256, {"text": 6, "visual": 4, "audio": 4}, 3, 1)
    assert (m.weight_adv, m.weight_orth, m.weight_cml, m.threshold, m.ctc) == (0.01, 5e-6, 0.5, 0.5, False)
    assert (m.discriminator, m.orth_pairs, m.common_semantic, m.classifier, m.concat_order) == ("linear", "paper", "paper", "per_label", "paper")
    t = paper.train
    assert (paper.data.batch_size, t.epochs, t.lr, t.optimizer, t.eps, t.schedule, t.warmup, t.seed, t.select_metric) == (64, 20, 1e-5, "bertadam", 1e-6, "warmup_linear", 0.1, 42, "micro_f1")
    unaligned = cfglib.resolve("tailor", "mosei-unaligned")
    assert (unaligned.model.ctc, unaligned.model.ctc_reference, unaligned.model.ctc_reduction, unaligned.model.weight_ctc, unaligned.train.lr) == (True, "text", "sum", 0.5, 1e-4)
    for dataset in ("m3ed", "memor-primary", "memor-fine"):
        assert cfglib.resolve("tailor", dataset).train.lr == 5e-5
    assert [cfglib.resolve("tailor", d).model.personality for d in ("memor-primary", "memor-fine", "synth-party", "synth-dyadic", "m3ed")] == [True, True, True, False, False]
    # the presets build on their data: the synthetic benchmarks, and MOSEI-shaped specs (aligned 60 steps; MulT's 50/500/500)
    for bundle, dataset in ((tiny_party, "synth-party"), (tiny_dyadic, "synth-dyadic")):
        TAILOR(cfglib.resolve("tailor", dataset).model, bundle.spec)
    emotions = ("happy", "sad", "anger", "surprise", "disgust", "fear")
    aligned = DataSpec("mosei-aligned", emotions, (ModalitySpec("text", 300, 60), ModalitySpec("visual", 35, 60), ModalitySpec("audio", 74, 60)))
    mult = DataSpec("mosei-unaligned", emotions, (ModalitySpec("text", 300, 50), ModalitySpec("visual", 35, 500), ModalitySpec("audio", 74, 500)))
    assert TAILOR(paper.model, aligned).cross[2].embedding.position.num_embeddings == 240  # M: 4 x 60 tokens (ref §2.4)
    assert TAILOR(unaligned.model, mult).cross[2].embedding.position.num_embeddings == 200


TINY_SETS = [
    "model.hidden_size=16", "model.num_heads=2", "model.intermediate_size=16", "model.layers.text=1", "model.layers.visual=1",
    "model.layers.audio=1", "model.default_layers=1", "model.cross_layers=1", "train.threads=1",
]  # fmt: skip


def cli_train(out: Path, dataset: str, *extra: str, root: Path | None = None) -> dict:
    metrics = cli_train_one_epoch("tailor", out, dataset, [*TINY_SETS, *extra], root)
    with (out / "history.csv").open() as fh:
        header = next(csv.reader(fh))
    assert {f"train_loss_{k}" for k in COMPONENTS} <= set(header)  # every component is logged
    return metrics


def test_mmer_train_tailor_on_the_synthetic_presets_and_report_keys(tmp_path, capsys):
    cli_train(tmp_path / "dyadic", "synth-dyadic", "data.options.size=tiny", "data.batch_size=8")
    metrics = cli_train(tmp_path / "party", "synth-party", "data.options.size=tiny", "data.batch_size=8")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "party"), "--split", "test"]) == 0
    again = json.loads((tmp_path / "party" / "metrics.json").read_text())
    assert again["test"]["micro_f1"] == pytest.approx(metrics["test"]["micro_f1"])
    # what `mmer report` collects from the trained run: Fig. 5, 6 and 7 inputs, with the report's shape checks
    loaded = load_run(tmp_path / "party")
    bundle = load_dataset("synth-party", None, loaded.cfg.data.options)
    data = analysis.collect(loaded.model, bundle.splits["test"], 64)
    m, c = len(bundle.spec.modalities), bundle.spec.num_labels
    assert data.arrays["discriminator_probs"].shape[1:] == (m, m) and data.arrays["discriminator_probs_specific"].shape[1:] == (m, m)
    assert data.arrays["common"].shape[1:] == data.arrays["specific"].shape[1:] == (m, 16)
    assert data.arrays["label_correlation"].shape == (c, c)
    assert set(data.arrays) == {"common", "specific", "discriminator_probs", "discriminator_probs_specific", "label_correlation"}


def test_mmer_train_tailor_on_miniature_mosei_files(tmp_path):
    from tests.data.official_files import write_mosei_aligned, write_mosei_unaligned

    write_mosei_aligned(tmp_path / "train_valid_test.pt")
    write_mosei_unaligned(tmp_path / "mosei_senti_data_noalign.pkl")
    cli_train(tmp_path / "aligned", "mosei-aligned", "data.batch_size=4", root=tmp_path)
    # the official code's setting on the same file: every step real, code options, threshold 0.35
    official = ["model.discriminator=mlp", "model.orth_pairs=code", "model.common_semantic=code", "model.classifier=shared",
                "model.concat_order=code", "model.threshold=0.35", "train.lr=5e-5", "data.options.masks=ones"]  # fmt: skip
    cli_train(tmp_path / "official", "mosei-aligned", "data.batch_size=4", *official, root=tmp_path)
    cli_train(tmp_path / "unaligned", "mosei-unaligned", "data.batch_size=4", root=tmp_path)
    with (tmp_path / "unaligned" / "history.csv").open() as fh:
        assert "train_loss_ctc" in next(csv.reader(fh))


def test_a_bad_setting_on_the_command_line_is_one_readable_error(tmp_path, capsys):
    args = ["train", "--model", "tailor", "--dataset", "synth-dyadic", "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]
    for s in [*TINY_SETS, "data.options.size=tiny", "model.fusion_order=[visual, speech, common]"]:
        args += ["--set", s]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.fusion_order" in err and "unknown: speech" in err


def test_initializer_range_sets_the_std_of_every_linear_and_embedding_weight():
    """The synthetic presets widen BERT's 0.02 (docs/models/tailor.md, "Synthetic presets"); the code's is the default."""
    torch.manual_seed(0)
    assert TAILORConfig().initializer_range == 0.02
    wide = TAILOR(TAILORConfig(**{**TINY, "hidden_size": 64, "intermediate_size": 64}, initializer_range=0.07), SPEC)
    weights = torch.cat([m.weight.flatten() for m in wide.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))])
    assert abs(weights.std().item() - 0.07) < 0.003
    assert abs(wide.classifier_weight.std().item() - 0.07) < 0.03
    narrow = TAILOR(TAILORConfig(**{**TINY, "hidden_size": 64, "intermediate_size": 64}), SPEC)
    weights = torch.cat([m.weight.flatten() for m in narrow.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))])
    assert abs(weights.std().item() - 0.02) < 0.001
