"""CARAT contracts the equation tests in test_carat.py leave open: every loss weight reaches its own component, the
reconstruction target o carries gradient, the shuffle ablation flags and modes do what Eq. 11-12 and Table 3 say
and the shuffled rows are scored against their own labels, the shuffled branch trains the features in joint mode,
`prototype_eval` chooses Eq. 9 or 10 at prediction, "w/o En/De" keeps prototypes of o, the contrastive loss is
SupCon over En(o), En(alpha), En(beta) with the configured temperature and anchors, and the report's
`modality_label` comes from the prediction level; a missing modality leaves its prototypes alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor

import mmer.models.carat as carat_module
from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.models.carat import CARAT
from mmer.nn.contrastive import QueueSupConLoss, modality_label_polarity_ids
from tests.models.carat_setup import SPEC, make_batch, model_for
from tests.models.helpers import train_step

NO_DROPOUT: dict[str, object] = dict(dropout=0.0, attention_dropout=0.0)
ONLY = {k: 0.0 for k in ("weight_clf_o", "weight_clf_alpha", "weight_clf_beta", "weight_contrastive", "weight_rec", "weight_agg", "weight_shuffle")}


pytestmark = pytest.mark.usefixtures("one_thread")


def first_level_by_hand(model: CARAT, intrinsic: Tensor, others: Tensor) -> Tensor:
    """Eq. 2, FRR: alpha_m = R_m([slot_t; slot_v; slot_a]) with the intrinsic vector in m's own slot."""
    nets = model.reconstruction.networks
    return torch.stack([nets[m](torch.cat([intrinsic[:, k] if k == m else others[:, k] for k in range(3)], -1)) for m in range(3)], 1)


def set_random_prototypes(model: CARAT, seed: int = 4) -> tuple[Tensor, Tensor]:
    """Unit-norm random mu+ and mu- [M, C, d] (as if after training); returns them."""
    g = torch.Generator().manual_seed(seed)
    shape = model.prototypes.positive.shape
    pos, neg = F.normalize(torch.randn(shape, generator=g), dim=-1), F.normalize(torch.randn(shape, generator=g), dim=-1)
    model.prototypes.positive, model.prototypes.negative = pos.clone(), neg.clone()
    return pos, neg


def intrinsic_by_hand(z: Tensor, pos: Tensor, neg: Tensor, pattern: str) -> Tensor:
    """Eq. 9 (soft: softmax-weighted mu+/mu-) or Eq. 10 (hard: the more similar prototype) from latents z."""
    zn = F.normalize(z, dim=-1)
    s_pos, s_neg = (zn * pos).sum(-1, keepdim=True), (zn * neg).sum(-1, keepdim=True)
    if pattern == "soft":
        w = torch.softmax(torch.cat([s_pos, s_neg], -1), -1)
        return w[..., :1] * pos + w[..., 1:] * neg
    return torch.where(s_pos > s_neg, pos, neg)


# ----------------------------------------------------------------------------------------------- Eq. 15 weights


def test_every_loss_weight_reaches_its_own_component(fabric: Fabric) -> None:
    """Eq. 15 with ten distinct weights: each config key weights its component (gamma_r multiplies the three L_rec
    terms) and the step's total is exactly that weighted sum."""
    keys = ("clf_o", "clf_alpha", "clf_beta", "contrastive", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle")
    values = dict(zip(keys, (0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19)))
    model = model_for(
        weight_clf_o=0.11, weight_clf_alpha=0.12, weight_clf_beta=0.13, weight_contrastive=0.14, weight_rec=2.0,
        weight_rec_autoencoder=0.15, weight_rec_first=0.16, weight_rec_second=0.17, weight_agg=0.18, weight_shuffle=0.19,
    )  # fmt: skip
    expected = {k: v * (2.0 if k.startswith("rec_") else 1.0) for k, v in values.items()}
    assert model.loss_weights() == pytest.approx(expected)
    logs = train_step(model, make_batch(), fabric)
    assert logs["loss"] == pytest.approx(sum(w * logs[f"loss_{k}"] for k, w in expected.items()), rel=1e-5)


# ----------------------------------------------------------------------------------------------- Eq. 3


def test_reconstruction_target_o_carries_gradient() -> None:
    """docs/models/carat.md: "the reconstruction target o is not detached" — the gradient of each L_rec term w.r.t.
    the label-wise attention is that of sum_m MSE(x_m, o_m) with both x and o differentiated."""
    model = model_for(**NO_DROPOUT).train()
    batch = make_batch()
    params = list(model.label_attention.parameters())
    o = model.label_features(batch)[0]
    lv = model.levels(o)  # the prototypes of this pass (before its update)
    hand = {
        "rec_autoencoder": sum(F.mse_loss(lv.decoded[:, m], o[:, m]) for m in range(3)),
        "rec_first": sum(F.mse_loss(lv.alpha[:, m], o[:, m]) for m in range(3)),
    }
    want = {k: torch.autograd.grad(v, params, retain_graph=True) for k, v in hand.items()}
    losses = model(batch).losses
    for name, grads in want.items():
        got = torch.autograd.grad(losses[name], params, retain_graph=True)
        for g, w in zip(got, grads):
            torch.testing.assert_close(g, w, msg=name)


# ----------------------------------------------------------------------------------------------- Eq. 11-14


def capture_shuffles(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Tensor]]:
    """Record the input and output of every label shuffle the model runs (the real function still runs)."""
    seen: list[dict[str, Tensor]] = []
    real = carat_module.label_shuffle

    def spy(features: Tensor, labels: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        shuffled, shuffled_y = real(features, labels, *args, **kwargs)
        seen.append(dict(features=features.detach(), labels=labels, shuffled=shuffled, shuffled_y=shuffled_y))
        return shuffled, shuffled_y

    monkeypatch.setattr(carat_module, "label_shuffle", spy)
    return seen


def sources(features: Tensor, shuffled: Tensor) -> tuple[Tensor, Tensor]:
    """For every shuffled cell [b, m, l] the (sample, modality) of the cell [b', m', l] it is a copy of: [C, B, M] each."""
    b, m, c, d = features.shape
    src = features.permute(2, 0, 1, 3).reshape(c, b * m, d)
    out = shuffled.detach().permute(2, 0, 1, 3).reshape(c, b * m, d)
    dist = torch.cdist(out, src)  # [C, B*M out, B*M src]
    assert float(dist.min(-1).values.max()) == 0.0  # every output is an exact copy of a source cell of its label
    idx = dist.argmin(-1).reshape(c, b, m)
    return idx // m, idx % m


def shuffled_run(monkeypatch: pytest.MonkeyPatch, **options: object) -> tuple[CARAT, Batch, dict[str, Tensor], Tensor]:
    """One training forward with a recorded shuffle: (model, batch, recorded shuffle, the `shuffle` loss)."""
    seen = capture_shuffles(monkeypatch)
    model = model_for(**NO_DROPOUT, **options).train()
    batch = make_batch()
    torch.manual_seed(0)
    loss = model(batch).losses["shuffle"]
    assert len(seen) == 1
    return model, batch, seen[0], loss


def test_without_sample_wise_shuffle_every_vector_stays_in_its_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Table 3 row (10): only Eq. 12 — per (sample, label) a permutation of the modalities; labels stay y, and the
    shuffle loss is BCE(A(shuffled), y)."""
    model, batch, rec, loss = shuffled_run(monkeypatch, shuffle_samples=False, shuffle_modalities=True)
    sample, modality = sources(rec["features"], rec["shuffled"])
    assert torch.equal(sample, torch.arange(6)[None, :, None].expand(4, 6, 3))
    assert torch.equal(modality.sort(-1).values, torch.arange(3).expand(4, 6, 3))  # a permutation per (label, sample)
    assert not torch.equal(modality, torch.arange(3).expand(4, 6, 3))  # and not the identity
    torch.testing.assert_close(rec["shuffled_y"], batch.labels[:, None].expand(6, 3, 4))
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(model.aggregate(rec["shuffled"]), batch.labels[:, None].expand(6, 3, 4)))


def test_without_modality_wise_shuffle_every_vector_stays_in_its_modality(monkeypatch: pytest.MonkeyPatch) -> None:
    """Table 3 row (11): only Eq. 11 — per (modality, label) a permutation of the samples; each shuffled vector takes
    its source sample's label, and the shuffle loss scores the rows against those shuffled labels."""
    model, batch, rec, loss = shuffled_run(monkeypatch, shuffle_samples=True, shuffle_modalities=False)
    sample, modality = sources(rec["features"], rec["shuffled"])
    assert torch.equal(modality, torch.arange(3)[None, None].expand(4, 6, 3))
    assert torch.equal(sample.sort(1).values, torch.arange(6)[None, :, None].expand(4, 6, 3))  # a permutation per (label, modality)
    y = batch.labels
    want_y = y[sample, torch.arange(4)[:, None, None]].permute(1, 2, 0)  # [B, M, C]: y[source sample, l]
    torch.testing.assert_close(rec["shuffled_y"], want_y)
    assert not torch.equal(want_y, y[:, None].expand(6, 3, 4))  # labels did move
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(model.aggregate(rec["shuffled"]), want_y))


@pytest.mark.parametrize(("mode", "bijective"), [("paper", True), ("carat_code", False)])
def test_shuffle_mode_paper_uses_each_cell_once_and_carat_code_does_not(mode: str, bijective: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shuffle: paper` (Eq. 11-12) is a permutation of the (sample, modality) grid of every label; `carat_code`, the
    official fused index, repeats and drops cells (docs/models/carat.md, "Options")."""
    _, _, rec, _ = shuffled_run(monkeypatch, shuffle=mode)
    sample, modality = sources(rec["features"], rec["shuffled"])
    cell = (sample * 3 + modality).reshape(4, 18)
    each_once = torch.equal(cell.sort(-1).values, torch.arange(18).expand(4, 18))
    assert each_once == bijective


def test_shuffled_branch_trains_the_features_in_joint_mode(fabric: Fabric) -> None:
    """agg_gradient=joint: BCE(A(shuffled beta), shuffled y) alone sends gradient into beta and on to the label-wise
    attention; agg_gradient=classifier: it trains A only."""
    for mode, reaches in (("joint", True), ("classifier", False)):
        model = model_for(agg_gradient=mode, **{**ONLY, "weight_shuffle": 1.0})
        train_step(model, make_batch(), fabric)
        assert float(model.aggregator[0].weight.grad.abs().sum()) > 0
        attention = model.label_attention["text"].queries.weight.grad
        assert (attention is not None and float(attention.abs().sum()) > 0) == reaches, mode


# ----------------------------------------------------------------------------------------------- Eq. 8-10


@pytest.mark.parametrize("pattern", ["hard", "soft"])
def test_prediction_uses_the_configured_prototype_pattern(pattern: str) -> None:
    """`prototype_eval`: at prediction the intrinsic vector is Eq. 10's hard choice (default, code) or Eq. 9's soft
    mixture (`soft`); the FRR puts De(c) in each modality's own slot and De(En(o)) elsewhere."""
    model = model_for(prototype_eval=pattern).eval()
    pos, neg = set_random_prototypes(model)
    with torch.no_grad():
        o = model.label_features(make_batch())[0]
        z = model.autoencoders.encode(o)
        c = intrinsic_by_hand(z, pos, neg, pattern)
        other = intrinsic_by_hand(z, pos, neg, "soft" if pattern == "hard" else "hard")
        alpha = first_level_by_hand(model, model.autoencoders.decode(c), model.autoencoders.decode(z))
        got = model.levels(o).alpha
    assert not torch.allclose(c, other, atol=1e-3)  # the two patterns differ here
    torch.testing.assert_close(got, alpha)


def test_without_autoencoders_the_prototypes_are_of_o_and_fill_the_own_slot() -> None:
    """Row (5) "w/o En/De" (docstring of `levels`): the prototypes follow the normalised o (momentum 0: the last member
    of each class), and at prediction the hard intrinsic vector of o fills each modality's own FRR slot, o the others."""
    model = model_for(autoencoders=False, weight_contrastive=0.0, prototype_momentum=0.0, **NO_DROPOUT).train()
    batch = make_batch()
    with torch.no_grad():
        o = model.label_features(batch)[0]
        model(batch)
    on, y = F.normalize(o, dim=-1), batch.labels
    for j in range(4):
        torch.testing.assert_close(model.prototypes.positive[:, j], on[int(torch.nonzero(y[:, j] > 0.5).max()), :, j])
        torch.testing.assert_close(model.prototypes.negative[:, j], on[int(torch.nonzero(y[:, j] < 0.5).max()), :, j])
    model.eval()
    pos, neg = set_random_prototypes(model)
    with torch.no_grad():
        expected = first_level_by_hand(model, intrinsic_by_hand(o, pos, neg, "hard"), o)
        torch.testing.assert_close(model.levels(o).alpha, expected)


# ----------------------------------------------------------------------------------------------- Eq. 6-7


def test_contrastive_loss_is_supcon_over_the_three_levels_with_the_configured_settings() -> None:
    """Eq. 6-7: SupCon over En(o), En(alpha), En(beta) of every (modality, label), classes (modality, label,
    polarity), with `temperature` and `contrastive_anchors` as configured — a reference QueueSupConLoss built from
    the same settings and fed the same embeddings gives the same loss on two steps (the second with a filled queue)."""
    model = model_for(**NO_DROPOUT, temperature=0.5, contrastive_anchors="pool", queue_size=1000).train()
    reference = QueueSupConLoss(8, 1000, 0.5, "pool", "empty")
    batch = make_batch()
    batch.masks["visual"][2] = True  # every modality present: 9 views per sample
    ids = modality_label_polarity_ids(batch.labels, [0, 1, 2] * 3).reshape(-1)
    for _ in range(2):
        with torch.no_grad():
            o = model.label_features(batch)[0]
            lv = model.levels(o)
            emb = torch.cat([model.autoencoders.encode(x) for x in (o, lv.alpha, lv.beta)], dim=1)  # [B, 9, C, d_z]
            expected = reference(emb.reshape(-1, 8), ids)
        torch.testing.assert_close(model(batch).losses["contrastive"], expected)


def test_queue_init_code_starts_with_a_full_pool_of_random_rows() -> None:
    """`queue_init: code` (docs/models/carat.md, "Options"): the queue starts full of random unit-norm rows whose
    class ids never match; `empty` starts with no row in the pool."""
    assert int(model_for().contrastive.queue_filled) == 0
    queue = model_for(queue_init="code").contrastive
    assert int(queue.queue_filled) == 64 and bool((queue.queue_ids < 0).all()) and float(queue.queue.abs().sum()) > 0


# ----------------------------------------------------------------------------------------------- multi-party


def test_a_target_without_any_features_is_still_a_real_token() -> None:
    """Multi-party data (module docstring): the target token always counts as a real token, a placeholder carrying
    its position and the target marker when its features are missing in every modality — so which of two
    feature-less tokens is the target changes the prediction (a masked-out token could not)."""
    spec = DataSpec("party", ("x", "y", "z"), tuple(ModalitySpec(n, d, 6) for n, d in (("text", 5), ("visual", 4), ("audio", 3))), personality_dim=2, multi_party=True)
    person = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4)
    segment = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    batch = make_batch(spec, b=4)
    for m in batch.masks:  # tokens 4 and 5 (the listener's last two) have no observation in any modality
        batch.masks[m][:, 4:] = False
        batch.features[m][:, 4:] = 0.0
    model = model_for(spec).eval()

    def probs_with_target(token: int) -> Tensor:
        target = torch.zeros(4, 6, dtype=torch.bool)
        target[:, token] = True
        return model.predict_proba(batch.replace(party=PartyStructure(person, segment, target)))

    assert (probs_with_target(4) - probs_with_target(5)).abs().max() > 1e-4


# ----------------------------------------------------------------------------------------------- report


def test_analysis_modality_label_is_the_prediction_levels_logits() -> None:
    """The report's "modality_label" (base.py: per-modality evidence before fusion) is W_m beta_m, the logits whose
    max over modalities Eq. 16 uses."""
    model = model_for().eval()
    batch = make_batch()
    with torch.no_grad():
        beta = model.levels(model.label_features(batch)[0]).beta
        expected = torch.einsum("bmcd,mcd->bmc", beta, model.classifier)
    torch.testing.assert_close(model.analysis(batch)["modality_label"], expected)


def test_a_missing_modality_leaves_its_prototypes_alone(fabric: Fabric) -> None:
    """Sample 2 of the batch has no visual token (o = 0, so a constant En(0)): a training step must move the visual
    prototypes exactly as the same step without that sample does, while its text latents still count."""
    full = make_batch()
    assert not bool(full.masks["visual"][2].any())
    keep = torch.tensor([0, 1, 3, 4, 5])
    without = Batch(
        {m: x[keep] for m, x in full.features.items()}, {m: x[keep] for m, x in full.masks.items()}, full.labels[keep], [full.ids[i] for i in keep.tolist()], torch.arange(5)
    )
    protos = []
    for batch in (full, without):
        model = model_for(**NO_DROPOUT)
        train_step(model, batch, fabric)
        protos.append((model.prototypes.positive.clone(), model.prototypes.negative.clone()))  # [M, C, d_z] each
    (pos_full, neg_full), (pos_without, neg_without) = protos
    visual = SPEC.modality_names.index("visual")
    torch.testing.assert_close(pos_full[visual], pos_without[visual])
    torch.testing.assert_close(neg_full[visual], neg_without[visual])
    assert not torch.allclose(pos_full[0] + neg_full[0], pos_without[0] + neg_without[0])  # text: sample 2 counted
