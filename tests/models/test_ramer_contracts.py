"""RAMer contracts the model tests did not pin down: Eq. 7's reconstruction loss with missing modalities, which
features feed S^m, C^m and g, the level losses and L_C / L_cml keeping the reconstructions of absent modalities,
the SupCon pool and the prototype EMA, per-modality label weights, the ablation and shuffle flags doing what
docs/models/ramer.md says, and the multi-party embedding's options (segment positions, person attention off,
the target bias, the keys of label-wise attention, the personality modes)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import mmer.models.ramer as ramer_module
from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DatasetBundle
from mmer.models.ramer import RAMer, RAMerConfig, RAMerState
from mmer.models.ramer_parts import TARGET_ROLE
from tests.models.ramer_setup import TINY, first_batch, model_for, no_dropout, with_gaps


def _state_and_losses(model: RAMer, batch: Batch) -> tuple[RAMerState, dict[str, Tensor]]:
    """The representations the next training forward pass will use (dropout off, prototypes not yet moved) and
    that pass's unweighted losses."""
    no_dropout(model)
    state = model.represent(batch)
    return state, model(batch).losses


# ------------------------------------------------------------------------------------------ reconstruction


def test_reconstruction_loss_is_eq7_averaged_over_the_samples_that_have_each_modality(tiny_party: DatasetBundle) -> None:
    """L_rec = sum_m mean over samples having m of (||X_alpha - X~||_F + ||X_alpha - X_beta||_F): unsquared
    Frobenius norms of the [C, d] label matrices, absent (sample, modality) pairs left out of sum and count."""
    model = model_for(tiny_party)
    batch = with_gaps(first_batch(tiny_party))
    s, losses = _state_and_losses(model, batch)
    expected = torch.zeros(())
    for m in range(s.present.shape[1]):
        rows = s.present[:, m]
        for x in (s.x_tilde, s.x_beta):
            expected = expected + (s.x_alpha[rows, m] - x[rows, m]).flatten(1).norm(dim=1).mean()
    assert not s.present.all()  # there are absent pairs to leave out
    torch.testing.assert_close(losses["rec"], expected)


@pytest.mark.parametrize("level", ["beta", "gamma"])
def test_reconstruction_levels_take_the_max_over_every_modality(level: str, tiny_party: DatasetBundle) -> None:
    """Eq. 8 for X_beta and X_gamma: the reconstructions of an absent modality stay (restoring it is what they are
    for), so S^beta and S^gamma are the max over all modalities; only the alpha level skips absent ones."""
    model = model_for(tiny_party)
    batch = with_gaps(first_batch(tiny_party))
    s, losses = _state_and_losses(model, batch)
    x = s.x_beta if level == "beta" else s.x_gamma
    logits = model.level_logits(x)  # [B, M, C]
    expected = F.binary_cross_entropy_with_logits(logits.max(dim=1).values, batch.labels)
    torch.testing.assert_close(losses[f"cls_{level}"], expected)
    present_only = F.binary_cross_entropy_with_logits(model.max_over_modalities(logits, s.present), batch.labels)
    assert not torch.allclose(expected, present_only)  # the batch tells the two readings apart


def test_first_level_puts_the_decoded_intrinsic_vector_in_the_own_slot(tiny_dyadic: DatasetBundle) -> None:
    """Eq. 6: X_beta^m = g_m([slots]) with D~_m = d_m(intrinsic(eps_m(X_alpha))) in m's own slot and the
    reconstructions X~_k = d_k(eps_k(X_alpha^k)) in the others; X_gamma^m = g_m([X_beta of every modality])."""
    model = model_for(tiny_dyadic).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # distinct prototypes so that D~ differs from X~
        model.prototypes.positive.copy_(F.normalize(torch.randn(model.prototypes.positive.shape, generator=g), dim=-1))
        model.prototypes.negative.copy_(F.normalize(torch.randn(model.prototypes.negative.shape, generator=g), dim=-1))
        s = model.represent(first_batch(tiny_dyadic))
        ae = model.autoencoders
        z = ae.encode(s.x_alpha)
        x_tilde, d_tilde = ae.decode(z), ae.decode(model.prototypes.intrinsic(z))
        m_count = s.x_alpha.shape[1]
        nets = model.reconstruction.networks
        beta = torch.stack(
            [nets[m](torch.cat([d_tilde[:, k] if k == m else x_tilde[:, k] for k in range(m_count)], dim=-1)) for m in range(m_count)], dim=1
        )
        gamma = torch.stack([nets[m](torch.cat([beta[:, k] for k in range(m_count)], dim=-1)) for m in range(m_count)], dim=1)
    assert not torch.allclose(d_tilde, x_tilde)
    torch.testing.assert_close(s.x_tilde, x_tilde)
    torch.testing.assert_close(s.x_beta, beta)
    torch.testing.assert_close(s.x_gamma, gamma)


@pytest.mark.parametrize(("use_beta", "use_gamma"), [(False, True), (True, False), (False, False)])
def test_reconstruction_ablations_remove_the_level_they_name(use_beta: bool, use_gamma: bool, tiny_party: DatasetBundle) -> None:
    """Table 4 rows (6)-(8): "w/o X_beta" keeps one level as X_gamma, "w/o X_gamma" keeps it as X_beta (which
    takes X_gamma's place downstream), both off leaves X_alpha; the removed level has no loss term."""
    model = model_for(tiny_party, use_beta=use_beta, use_gamma=use_gamma)
    s, losses = _state_and_losses(model, first_batch(tiny_party))
    assert (s.x_beta is not None) == use_beta and (s.x_gamma is not None) == use_gamma
    assert ("cls_beta" in losses) == use_beta and ("cls_gamma" in losses) == use_gamma
    expected_top = s.x_gamma if use_gamma else s.x_beta if use_beta else s.x_alpha
    assert s.top is expected_top
    assert (model.reconstruction is None) == (not use_beta and not use_gamma)


# ------------------------------------------------------------------------------------------ adversarial part


def test_specific_and_common_features_come_from_alpha_and_the_top_reconstruction(tiny_party: DatasetBundle) -> None:
    """Eq. 1-2: S^m = f_m(X_alpha^m) (zero where m is absent) and C^m = G(X_gamma^m) for every modality."""
    model = model_for(tiny_party).eval()
    batch = with_gaps(first_batch(tiny_party))
    with torch.no_grad():
        s = model.represent(batch)
        specific = torch.stack([f(s.x_alpha[:, m]) for m, f in enumerate(model.specificity.nets)], dim=1)
        common = torch.stack([model.generator.net(s.x_gamma[:, m]) for m in range(s.x_gamma.shape[1])], dim=1)
    torch.testing.assert_close(s.specific, specific * s.present[:, :, None, None])
    torch.testing.assert_close(s.common, common)
    assert s.common[~s.present].abs().sum() > 0  # an absent modality's C^m comes from its reconstruction


def test_common_losses_keep_absent_modalities(tiny_party: DatasetBundle) -> None:
    """L_C and L_cml run on C^m = G(X_gamma^m), which exists for absent modalities too: every sample counts (only
    L_S, L_orth and the alpha terms leave absent modalities out)."""
    model = model_for(tiny_party)
    batch = with_gaps(first_batch(tiny_party))
    s, losses = _state_and_losses(model, batch)
    commons = list(s.common.unbind(1))
    masks = [s.present[:, m, None].expand(-1, s.common.shape[2]) for m in range(s.present.shape[1])]
    torch.testing.assert_close(losses["adv_common"], model.discriminator.modality_loss(commons))
    torch.testing.assert_close(losses["cml"], model.common_head.loss(commons, batch.labels))
    assert not torch.allclose(losses["adv_common"], model.discriminator.modality_loss(commons, masks))
    assert not torch.allclose(losses["cml"], model.common_head.loss(commons, batch.labels, masks))


# ------------------------------------------------------------------------------------------ logits, analysis


def test_each_modality_has_its_own_label_weights(tiny_dyadic: DatasetBundle) -> None:
    """Eq. 8: logit[b, m, l] = <X[b, m, l], W_m[l]> with W_m [C, d] per modality (no bias)."""
    model = model_for(tiny_dyadic)
    x = torch.randn(2, *model.label_weight.shape)
    expected = (x * model.label_weight.detach()[None]).sum(-1)
    torch.testing.assert_close(model.level_logits(x).detach(), expected)


def test_analysis_reconstructed_is_the_latent_of_the_top_reconstruction(tiny_party: DatasetBundle) -> None:
    """The report's "reconstructed" embedding is eps_m(X_gamma) averaged over the label slots (base.py)."""
    model = model_for(tiny_party)
    batch = first_batch(tiny_party)
    out = model.analysis(batch)
    with torch.no_grad():
        s = model.eval().represent(batch)
        expected = model.autoencoders.encode(s.x_gamma).mean(dim=2)
    torch.testing.assert_close(out["reconstructed"], expected)


# ------------------------------------------------------------------------------------------ SupCon, prototypes


def test_contrastive_pool_is_present_alpha_views_plus_every_beta_and_gamma_view(tiny_party: DatasetBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eq. 11's rows: eps(X_alpha) of the (sample, modality) pairs that exist, eps(X_beta) and eps(X_gamma) of all
    pairs, one row per label, each of class (modality, label, polarity) = label + C (2 m + 1 - y)."""
    model = model_for(tiny_party)
    batch = with_gaps(first_batch(tiny_party))
    seen: dict[str, Tensor] = {}
    real = model.contrastive.forward

    def spy(embeddings: Tensor, class_ids: Tensor, enqueue: bool = True) -> Tensor:
        seen["z"], seen["ids"] = embeddings.detach(), class_ids
        return real(embeddings, class_ids, enqueue)

    monkeypatch.setattr(model.contrastive, "forward", spy)
    s, _ = _state_and_losses(model, batch)
    b, m_count, c = s.present.shape[0], s.present.shape[1], batch.labels.shape[1]
    with torch.no_grad():
        levels = [s.z_alpha, model.autoencoders.encode(s.x_beta), model.autoencoders.encode(s.x_gamma)]
    rows, ids = [], []
    for i in range(b):
        for level, z in enumerate(levels):
            for m in range(m_count):
                if level == 0 and not s.present[i, m]:
                    continue
                for j in range(c):
                    rows.append(z[i, m, j])
                    ids.append(j + c * (2 * m + 1 - int(batch.labels[i, j] >= 0.5)))
    torch.testing.assert_close(seen["z"], torch.stack(rows))
    assert seen["ids"].tolist() == ids


def test_prototype_ema_skips_absent_modalities(tiny_party: DatasetBundle) -> None:
    """The prototype update after a training step equals the code's per-sample loop mu <- g mu + (1 - g) z^ over
    the samples that have the modality (z^ = the unit alpha latent), in batch order, from zero prototypes."""
    model = model_for(tiny_party, prototype_momentum=0.9)
    batch = with_gaps(first_batch(tiny_party))
    s, _ = _state_and_losses(model, batch)
    z = F.normalize(s.z_alpha.detach(), dim=-1)  # [B, M, C, d_z]
    g = 0.9
    pos, neg = torch.zeros_like(z[0]), torch.zeros_like(z[0])
    for i in range(z.shape[0]):
        has = s.present[i][:, None, None]  # [M, 1, 1]
        label = (batch.labels[i] >= 0.5)[None, :, None]  # [1, C, 1]
        pos = torch.where(has & label, g * pos + (1 - g) * z[i], pos)
        neg = torch.where(has & ~label, g * neg + (1 - g) * z[i], neg)
    torch.testing.assert_close(model.prototypes.positive, pos)
    torch.testing.assert_close(model.prototypes.negative, neg)


# ------------------------------------------------------------------------------------------ shuffle and c_zeta


@pytest.mark.parametrize(("shuffle", "nn_mode"), [("stack", "stack"), ("uniform", "paper"), ("code", "reverse")])
def test_shuffle_options_reach_label_shuffle(shuffle: str, nn_mode: str, tiny_dyadic: DatasetBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shuffle` picks the nn.shuffle mode (stack = paper §4.3, uniform = CARAT's permutations, code = reversal),
    and `shuffle_stacks` / `shuffle_iterations` are the k and the rounds it uses."""
    seen: dict[str, Any] = {}
    real = ramer_module.label_shuffle

    def spy(features: Tensor, labels: Tensor, mode: str, **kw: Any) -> tuple[Tensor, Tensor]:
        seen.update(mode=mode, **kw)
        return real(features, labels, mode, **kw)

    monkeypatch.setattr(ramer_module, "label_shuffle", spy)
    model = model_for(tiny_dyadic, shuffle=shuffle, shuffle_stacks=3, shuffle_iterations=5)
    _state_and_losses(model, first_batch(tiny_dyadic))
    assert seen == {"mode": nn_mode, "sample_stacks": 3, "iterations": 5}


def test_finetune_without_shuffle_also_stops_the_gradient_at_c_zeta(tiny_dyadic: DatasetBundle) -> None:
    """`shuffle_training: finetune` is a stop-gradient at c_zeta's input whatever the shuffle: with `shuffle: none`
    L_suf still trains c_zeta only."""
    zero = {k: 0.0 for k in RAMerConfig.__dataclass_fields__ if k.startswith("lambda_") and k != "lambda_suf"}
    model = model_for(tiny_dyadic, shuffle="none", shuffle_training="finetune", **zero)
    _, losses = _state_and_losses(model, first_batch(tiny_dyadic))
    assert set(losses) == {"suf"}
    losses["suf"].backward()
    assert model.classifier[0].weight.grad.abs().sum() > 0
    below = [n for n, p in model.named_parameters() if not n.startswith("classifier.") and p.grad is not None]
    assert below == []


def test_unshuffled_term_is_the_bce_of_c_zeta_and_trains_it(tiny_dyadic: DatasetBundle) -> None:
    """`lambda_unshuffled` > 0 adds BCE(c_zeta([C^m; S^m]), y) per modality (CARAT's un-shuffled term), a loss
    with gradient into c_zeta."""
    model = model_for(tiny_dyadic, lambda_unshuffled=0.5)
    batch = first_batch(tiny_dyadic)
    s, losses = _state_and_losses(model, batch)
    logits = model.classify(s.head_input)
    expected = F.binary_cross_entropy_with_logits(logits, batch.labels[:, None].expand_as(logits))
    torch.testing.assert_close(losses["unshuffled"], expected)
    (grad,) = torch.autograd.grad(losses["unshuffled"], [model.classifier[2].weight])
    assert grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ multi-party embedding


def _permute_tokens(batch: Batch, order: Tensor) -> Batch:
    """The same clips with their token columns in another order (every per-token tensor permuted alike)."""
    party = batch.party
    assert party is not None and batch.personality is not None
    return batch.replace(
        features={m: x[:, order] for m, x in batch.features.items()},
        masks={m: x[:, order] for m, x in batch.masks.items()},
        personality=batch.personality[:, order],
        party=PartyStructure(party.person[:, order], party.segment[:, order], party.target[:, order]),
    )


def test_segment_positions_make_the_token_order_of_a_clip_irrelevant(tiny_party: DatasetBundle) -> None:
    """`party_positions: segment` (default) gives every token its segment index as position, so a clip is a set of
    (person, segment) tokens: listing them in another order leaves the prediction unchanged; the code's row
    positions (`token`) do not."""
    batch = first_batch(tiny_party)
    order = torch.randperm(batch.party.person.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = _permute_tokens(batch, order)
    probs = {}
    for positions in ("segment", "token"):
        model = model_for(tiny_party, party_positions=positions).eval()
        with torch.no_grad():
            probs[positions] = (model(batch).probs, model(shuffled).probs)
    torch.testing.assert_close(*probs["segment"], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(*probs["token"], atol=1e-4)


def test_person_attention_off_keeps_each_token_to_itself(tiny_party: DatasetBundle) -> None:
    """`person_attention: false`: the personality is still concatenated and projected, but no token reads the
    other persons or segments (the "without person attention" ablation)."""
    batch = first_batch(tiny_party)
    party = batch.party
    b, t = party.person.shape
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(b, 3, t, TINY["hidden_size"], generator=g)
    has = torch.stack([batch.masks[m] for m in tiny_party.spec.modality_names], dim=1)
    personality = torch.randn(b, t, TINY["hidden_size"], generator=g)
    others = hidden.clone()
    others[:, :, 1:] += 1.0  # change every token but the first
    changed = {}
    for attend in (False, True):
        module = model_for(tiny_party, person_attention=attend).embedding.person_attention
        with torch.no_grad():
            first = module(hidden, has, party, personality)[:, :, 0]
            changed[attend] = not torch.allclose(first, module(others, has, party, personality)[:, :, 0])
    assert changed == {False: False, True: True}


def test_target_bias_starts_label_attention_on_the_target_token(tiny_party: DatasetBundle) -> None:
    """`target_bias` is the initial label-attention score bonus of the target token (role TARGET_ROLE): with a
    large bonus every label of every modality starts out reading the target token(s) only."""
    model = model_for(tiny_party, target_bias=40.0).eval()
    batch = first_batch(tiny_party)
    args: dict[str, tuple[Tensor, ...]] = {}
    hooks = [
        model.embedding.label_attention[m].register_forward_pre_hook(lambda _, a, m=m: args.__setitem__(m, a))
        for m in tiny_party.spec.modality_names
    ]
    with torch.no_grad():
        model(batch)
        for hook in hooks:
            hook.remove()
        for m, (hidden, keys, bias) in args.items():
            weights = model.embedding.label_attention[m].weights(hidden, keys, bias)  # [B, C, T]
            on_target = (weights * batch.party.target[:, None, :]).sum(-1)  # [B, C]
            assert (on_target > 0.99).all(), m
    start = torch.zeros(3, 9, 8)
    start[..., TARGET_ROLE] = 40.0
    torch.testing.assert_close(model.embedding.role_bias.detach(), start)


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_values_where_a_token_lacks_a_modality_never_reach_the_prediction(mode: str, tiny_party: DatasetBundle) -> None:
    """A token without modality m (mask False) carries no m-data: filling it with noise changes nothing, with
    person attention (it is complemented from the others) and without it (the code's mode: label-wise attention
    keys only on the tokens that have m, plus the appended personality tokens)."""
    options = dict(personality="code", person_attention=False, target_roles=False, party_positions="token") if mode == "code" else {}
    model = model_for(tiny_party, **options).eval()
    batch = first_batch(tiny_party)
    lacking = {m: batch.party.valid & ~mask for m, mask in batch.masks.items()}
    assert any(v.any() for v in lacking.values())  # listeners lack text: there are such tokens
    g = torch.Generator().manual_seed(0)
    noisy = batch.replace(
        features={m: torch.where(lacking[m][..., None], 5 * torch.randn(x.shape, generator=g), x) for m, x in batch.features.items()}
    )
    with torch.no_grad():
        torch.testing.assert_close(model(noisy).probs, model(batch).probs)


@pytest.mark.parametrize("personality", ["paper", "code", "none"])
def test_personality_traits_reach_the_prediction_unless_switched_off(personality: str, tiny_party: DatasetBundle) -> None:
    """`personality: paper` (concatenated before person attention) and `code` (appended tokens) make the
    prediction depend on each token's personality traits; `none` ignores them (AMER w/o personality)."""
    options = dict(person_attention=False, target_roles=False) if personality == "code" else {}
    model = model_for(tiny_party, personality=personality, **options).eval()
    batch = first_batch(tiny_party)
    assert batch.personality is not None
    other = batch.replace(personality=batch.personality.flip(0))
    with torch.no_grad():
        same = torch.allclose(model(batch).probs, model(other).probs)
    assert same == (personality == "none")
