"""AMP contracts the model tests did not pin down: the logged Eq. 15 total, which parameters each `app_scope`
perturbs, `app_noise: random`, the masking network's sigmoid scores, the Table 2 ablation flags (`atm`,
`exclude_modalities`, `fusion_encoder`) having their documented effect, no logit dropout on the per-label
classifiers, and the FGSM baseline step against the same loss written as one graph."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning_fabric import Fabric
from torch import Tensor

import mmer.models.amp as amp_module
from mmer.models.amp import AMP, AMPConfig
from tests.models.amp_setup import SPEC, TINY, grads, make_batch, step


def _model(**options: Any) -> AMP:
    torch.manual_seed(0)
    return AMP(AMPConfig(**{**TINY, **options}), SPEC)


def test_logged_total_is_eq15_with_rho_on_the_mask_loss_and_sigma_on_the_consistency_loss(fabric: Fabric) -> None:
    """history.csv's `loss` is L_r + rho L_m + sigma L_p (Eq. 15), with distinct rho and sigma."""
    logs = step(_model(rho=0.3, sigma=0.5, dropout=0.0), make_batch(), fabric)
    expected = logs["loss_task"] + 0.3 * logs["loss_mask"] + 0.5 * logs["loss_app"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-6)
    assert logs["loss_mask"] != pytest.approx(logs["loss_app"], rel=1e-2)  # the weights are told apart


SCOPE_TARGETS = {
    "decoder": [f"decoder.layers.0.{a}" for a in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "multihead_attn.in_proj_weight", "multihead_attn.out_proj.weight", "linear1.weight", "linear2.weight")],
    "unimodal": [f"unimodal.{m}.layers.0.{a}" for m in ("text", "visual", "audio") for a in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight")],
}


@pytest.mark.parametrize("scope", ["decoder", "unimodal"])
def test_app_scope_perturbs_the_attention_and_ffn_weights_of_the_named_modules(scope: str, monkeypatch: pytest.MonkeyPatch, fabric: Fabric) -> None:
    """Fig. 4b's placements: `app_scope: [decoder]` / `[unimodal]` move exactly that module's attention and FFN
    weights during the perturbed pass, together by the radius gamma, and nothing else."""
    model = _model(app_scope=[scope], gamma=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    moved: dict[str, float] = {}
    real_kl = amp_module.consistency_kl

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        moved.update({n: float((p.detach() - before[n]).norm()) for n, p in model.named_parameters()})
        return real_kl(*args, **kwargs)

    monkeypatch.setattr(amp_module, "consistency_kl", spy)
    step(model, make_batch(), fabric)
    changed = sorted(n for n, v in moved.items() if v > 0)
    assert changed == sorted(SCOPE_TARGETS[scope])
    assert sum(moved[n] ** 2 for n in changed) ** 0.5 == pytest.approx(0.5, rel=1e-4)


def test_random_app_noise_is_not_the_gradient_direction(monkeypatch: pytest.MonkeyPatch, fabric: Fabric) -> None:
    """Table 2 "-g (+ random perturbation)": `app_noise: random` perturbs along a random direction, not along
    grad L_r as the default does."""
    directions: dict[str, Tensor] = {}
    real = amp_module.perturbed_parameters
    for noise in ("gradient", "random"):

        def spy(params: Any, direction: list[Tensor], *args: Any, noise: str = noise) -> Any:
            directions[noise] = torch.cat([d.flatten() for d in direction])
            return real(params, direction, *args)

        monkeypatch.setattr(amp_module, "perturbed_parameters", spy)
        model = _model(app_noise=noise, dropout=0.0)
        torch.manual_seed(1)
        step(model, make_batch(), fabric)
    cosine = torch.nn.functional.cosine_similarity(directions["gradient"], directions["random"], dim=0)
    assert abs(float(cosine)) < 0.5


def test_masking_network_scores_are_sigmoids_of_a_linear_map(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eq. 5-6: the scores soft top-k ranks are M^x = sigmoid(H^x w + b) (b per position), zero-padded to a
    common length; soft top-k then selects round(ratio * n) of them."""
    model = _model().train()
    batch = make_batch()
    x, masks = model._inputs(batch)
    hidden = {m: h.detach() for m, h in model.encode_unimodal(model.embed_inputs(x, batch), masks).items()}
    seen: dict[str, Tensor] = {}
    real = amp_module.soft_topk

    def spy(scores: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        seen["scores"] = scores.detach()
        return real(scores, *args, **kwargs)

    monkeypatch.setattr(amp_module, "soft_topk", spy)
    model.mask_indicator(hidden, masks)
    length = max(h.shape[1] for h in hidden.values())
    with torch.no_grad():
        expected = torch.zeros(len(hidden), batch.size, length)
        for i, (m, h) in enumerate(hidden.items()):
            expected[i, :, : h.shape[1]] = torch.sigmoid(model.scorers[m](h).squeeze(-1) + model.scorer_bias[m][: h.shape[1]])
    torch.testing.assert_close(seen["scores"], expected)


def test_atm_off_runs_no_masked_pass_and_trains_no_masking_network(fabric: Fabric) -> None:
    """Table 2 "-ATM": no L_m is computed or logged and the masking networks get no gradient."""
    model = _model(atm=False, dropout=0.0)
    logs = step(model, make_batch(), fabric)
    assert "loss_mask" not in logs and {"loss_task", "loss_app"} <= set(logs)
    assert logs["loss"] == pytest.approx(logs["loss_task"] + model.cfg.sigma * logs["loss_app"], rel=1e-6)
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith(("scorers.", "scorer_bias.")))


def test_excluded_modality_is_neither_built_nor_read() -> None:
    """Table 2 "-E^x and x^x": `exclude_modalities: [text]` builds no text encoder, projection or masking
    network, and the prediction does not depend on the text features."""
    model = _model(exclude_modalities=["text"]).eval()
    assert not [n for n, _ in model.named_parameters() if ".text." in f".{n}."]
    batch = make_batch()
    noisy = batch.replace(features={**batch.features, "text": torch.randn_like(batch.features["text"]) * 10})
    torch.testing.assert_close(model.predict_proba(noisy), model.predict_proba(batch))
    assert not torch.allclose(_model().eval().predict_proba(noisy), _model().eval().predict_proba(batch))


def test_without_the_fusion_encoder_the_decoder_reads_the_unimodal_outputs() -> None:
    """Table 2 "-E^m": no multi-modal encoder is built and D attends to the concatenated uni-modal outputs."""
    model = _model(fusion_encoder=False, app_scope=["unimodal"]).eval()
    assert model.fusion is None and not [n for n, _ in model.named_parameters() if n.startswith("fusion.")]
    batch = make_batch()
    memory: list[Tensor] = []
    model.decoder.register_forward_pre_hook(lambda _, args: memory.append(args[1]))
    model.predict_proba(batch)
    x, masks = model._inputs(batch)
    with torch.no_grad():
        hidden = model.encode_unimodal(model.embed_inputs(x, batch), masks)
    torch.testing.assert_close(memory[0], torch.cat(list(hidden.values()), dim=1))


@pytest.mark.parametrize(("classifier", "drops"), [("per_label", False), ("shared", True)])
def test_only_the_shared_classifier_drops_out_its_logits(classifier: str, drops: bool) -> None:
    """The paper's K linear classifiers have no dropout on their logits; the code's shared Linear(d, 1) has."""
    model = _model(classifier=classifier, dropout=0.5).train()
    logits = torch.ones(64, 3)
    assert (not torch.equal(model.logit_dropout(logits), logits)) == drops


def test_fgsm_step_equals_clean_plus_adversarial_loss_in_one_graph(fabric: Fabric) -> None:
    """Table 2 (+ FGSM): the step's gradients are those of L(emb) + L(emb + eps sign(grad_emb L)) with the
    perturbation a constant, reaching every parameter including the input projections; the adversarial loss is
    above the clean one (the step ascends)."""
    model = _model(atm=False, app=False, input_perturbation="fgsm", input_epsilon=0.05, dropout=0.0)
    batch = make_batch()
    logs = step(model, batch, fabric)
    staged = grads(model)
    assert logs["loss_adv"] > logs["loss_task"]

    model.zero_grad(set_to_none=True)
    x, masks = model._inputs(batch)

    def loss_from(emb: dict[str, Tensor]) -> Tensor:
        return model.task_loss(model.fuse_and_classify(model.encode_unimodal(emb, masks), masks), batch.labels)

    emb = model.embed_inputs(x, batch)
    clean = loss_from(emb)
    g = torch.autograd.grad(clean, list(emb.values()), retain_graph=True)
    delta = {m: 0.05 * gm.sign() for m, gm in zip(emb, g)}
    (clean + loss_from({m: emb[m] + delta[m] for m in emb})).backward()
    reference = grads(model)
    for name, value in reference.items():
        torch.testing.assert_close(staged[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert staged["embed.text.0.weight"].abs().sum() > 0


def test_soft_topk_masks_the_units_the_masking_network_scores_highest() -> None:
    """Eq. 7: A^x marks the k highest-scoring units. With scores rising along the sequence (a zero scorer and a
    rising position bias), the mask sits on the last real units of every row."""
    model = _model(mask_ratio=0.3).train()
    batch = make_batch()
    _, masks = model._inputs(batch)
    with torch.no_grad():
        for m in model.modalities:
            model.scorers[m].weight.zero_()
            model.scorer_bias[m].copy_(torch.linspace(-4.0, 4.0, model.scorer_bias[m].shape[0]))
    hidden = {m: torch.randn(*masks[m].shape, TINY["d_model"]) for m in model.modalities}
    a = model.mask_indicator(hidden, masks)
    for m in model.modalities:
        for b in range(batch.size):
            real = masks[m][b].nonzero().squeeze(1)
            k = int(0.3 * len(real) + 0.5)
            if k == 0:
                continue
            top, rest = a[m][b, real[-k:]], a[m][b, real[:-k]]
            assert top.mean() > 0.5 and (len(rest) == 0 or rest.mean() < top.mean() - 0.2), (m, b)
