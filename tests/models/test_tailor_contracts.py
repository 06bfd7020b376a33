"""TAILOR contracts the equation tests in test_tailor.py leave open: L_P has no gradient reversal, the logit dropout
belongs to the shared classifier only, the single-representation rows of Table 3 fuse that representation, deeper
stacks use every layer, the Fig. 7 matrix comes from the first decoder layer, the report's analysis keys hold what
their names say, the CTC loss reads real frames wherever the padding sits and is exact under micro-batches, and
L_ml stays exact when the logits saturate."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import Tensor, nn

from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.engine.context import StepContext, run_training_step
from mmer.models.tailor import TAILOR, ctc_alignment_loss
from tests.models.helpers import padded_batch, train_step
from tests.models.tailor_setup import NO_DROPOUT, A, T, V, make_batch, model_for, scrambled

UNALIGNED = DataSpec("unaligned", ("a", "b"), (ModalitySpec("text", 6, 5), ModalitySpec("visual", 4, 12), ModalitySpec("audio", 3, 12)))


pytestmark = pytest.mark.usefixtures("one_thread")


def pooled(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B, L, D] over the real steps of mask [B, L] (0 for a sample without any)."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def cme(model: TAILOR, i: int, first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """CME_i([first; second]) with modality token ids 0 / 1 (Eq. 8)."""
    x, mask = torch.cat([first[0], second[0]], 1), torch.cat([first[1], second[1]], 1)
    types = torch.cat([torch.zeros_like(first[1], dtype=torch.long), torch.ones_like(second[1], dtype=torch.long)], 1)
    return model.cross[i](x, mask, types), mask


def self_attention_weights(model: TAILOR, layer: int) -> Tensor:
    """Eq. 10-11 of decoder layer `layer` on the label embeddings: softmax(q k^T / sqrt(d_h)) per head [h, C, C]."""
    att = model.decoder_layers[layer].self_attention.attention
    emb = model.label_embedding.norm(model.label_embedding.embedding.weight)  # [C, d]

    def heads(linear: nn.Linear) -> Tensor:
        return linear(emb).unflatten(-1, (att.num_heads, att.head_dim)).transpose(0, 1)  # [h, C, dh]

    return torch.softmax(heads(att.query) @ heads(att.key).transpose(-1, -2) / att.head_dim**0.5, dim=-1)


# ------------------------------------------------------------------------------------- adversarial refinement


def test_private_adversarial_loss_trains_everything_without_reversal() -> None:
    """Eq. 5: L_P reaches f_m, the extractors and D with its plain gradient; only L_C passes through the GRL."""
    model = model_for(**NO_DROPOUT).train()
    batch = make_batch()
    private = list(model.private.parameters())
    params = [*private, *model.encoders["visual"].layers.parameters(), *model.discriminator.parameters()]
    got = torch.autograd.grad(model(batch).losses["adv_private"], params)
    hidden, masks, _ = model.extract(batch)
    want = torch.autograd.grad(model.discriminator.modality_loss(model.private(hidden), masks), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert all(float(g.abs().sum()) > 0 for g in got[: len(private)])


# ------------------------------------------------------------------------------------- classifier (Eq. 15)


@pytest.mark.parametrize(("classifier", "dropped"), [("per_label", False), ("shared", True)])
def test_logit_dropout_belongs_to_the_shared_classifier_only(classifier: str, dropped: bool) -> None:
    """Eq. 15 (per_label) has no dropout on the logits; the code's shared classifier drops them with p 0.1. With every
    other dropout off, two training passes agree exactly if and only if no logit dropout is applied."""
    model = scrambled(model_for(**NO_DROPOUT, classifier=classifier)).train()
    batch = make_batch()
    torch.manual_seed(0)
    first = model(batch).probs
    torch.manual_seed(1)
    second = model(batch).probs
    assert torch.equal(first, second) != dropped


# ------------------------------------------------------------------------------------- fusion (Eq. 8)


@pytest.mark.parametrize("representation", ["common", "private"])
def test_single_representation_rows_fuse_that_representation(representation: str) -> None:
    """Table 3 rows (4) "w/ C^{v,a,t}" and (5) "w/ P^{v,a,t}": the HCME folds C^m (resp. P^m) in the order v, a, t,
    with no summed C: M = CME(CME(X^v, X^a), X^t)."""
    model = scrambled(model_for(representations=[representation]), std=0.3).eval()
    batch = make_batch()
    with torch.no_grad():
        hidden, masks, _ = model.extract(batch)
        x = model.generator(hidden) if representation == "common" else model.private(hidden)
        memory = cme(model, 1, cme(model, 0, (x[V], masks[V]), (x[A], masks[A])), (x[T], masks[T]))
        expected = torch.sigmoid(model.decode(*memory))
    probs = model.predict_proba(batch)
    assert probs.std(0).mean() > 0.01  # the input matters
    torch.testing.assert_close(probs, expected)


def test_every_layer_of_deeper_stacks_takes_part(fabric: Fabric) -> None:
    """`layers`, `cross_layers` and `decoder_layers` > 1: every layer of every stack is run, so every parameter of the
    model receives a gradient in one training step."""
    model = model_for(layers={"text": 2, "visual": 2, "audio": 2}, cross_layers=2, decoder_layers=2)
    assert len(model.cross[0].layers) == 2 and len(model.decoder_layers) == 2
    train_step(model, make_batch(), fabric)
    silent = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert silent == []


def party_batch() -> tuple[DataSpec, Batch]:
    """Two persons on a 6-token grid, target token 4; token 5 of samples 2 and 3 is padding (person -1)."""
    spec = DataSpec("party", ("x", "y", "z"), tuple(ModalitySpec(n, d, 6) for n, d in (("text", 5), ("visual", 4), ("audio", 3))), personality_dim=2, multi_party=True)
    person = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4)
    person[2:, 5] = -1
    segment = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    target = torch.zeros(4, 6, dtype=torch.bool)
    target[:, 4] = True
    batch = padded_batch(spec, 4).replace(party=PartyStructure(person, segment, target), personality=torch.randn(4, 6, 2, generator=torch.Generator().manual_seed(2)))
    for m in batch.masks:
        batch.masks[m][2:, 5] = False
        batch.features[m][2:, 5] = 0.0
    return spec, batch


def test_personality_is_real_at_every_existing_token() -> None:
    """docs/models/tailor.md: the personality modality is "real at every existing token" — the traits of a token that
    is not the target still change the prediction, those of a padding token (person -1) do not."""
    spec, batch = party_batch()
    model = scrambled(model_for(spec, personality=True), std=0.3).eval()
    probs = model.predict_proba(batch)

    def with_personality_at(token: int) -> Tensor:
        traits = batch.personality.clone()
        traits[:, token] = traits[:, token].flip(-1)  # swapped traits (the input LayerNorm hides a common shift)
        return model.predict_proba(batch.replace(personality=traits))

    assert (with_personality_at(0) - probs).abs().max() > 1e-3  # a listener's / earlier token's traits count
    torch.testing.assert_close(with_personality_at(5)[2:], probs[2:])  # padding never does


# ------------------------------------------------------------------------------------- report (Fig. 5-7)


def test_label_correlation_is_the_first_decoder_layers_self_attention() -> None:
    """Fig. 7 (docstring of `label_correlation`): the first decoder layer's label self-attention, mean over heads,
    transposed so that entry [j, k] is the weight with which label k reads label j — also with two decoder layers."""
    model = scrambled(model_for(decoder_layers=2)).eval()
    with torch.no_grad():
        first, second = self_attention_weights(model, 0).mean(0).T, self_attention_weights(model, 1).mean(0).T
        got = model.label_correlation()
    torch.testing.assert_close(got, first)
    assert not torch.allclose(first, second, atol=1e-3)
    torch.testing.assert_close(got.sum(0), torch.ones(4))


def test_analysis_keys_hold_c_p_and_the_discriminator_on_each() -> None:
    """The report's inputs (base.py): "common" = C^m = G(H^m) and "specific" = P^m = f_m(H^m), each pooled over m's
    real steps [B, M, d]; "discriminator_probs" / "_specific" = D's softmax on C^m / P^m, pooled the same way."""
    model = scrambled(model_for()).eval()
    batch = make_batch()
    with torch.no_grad():
        hidden, masks, _ = model.extract(batch)
        c, p = model.generator(hidden), model.private(hidden)

        def d_probs(reps: list[Tensor]) -> Tensor:
            return torch.stack([pooled(torch.softmax(model.discriminator(reps[i]), -1), masks[i]) for i in range(3)], 1)

        expected = {
            "common": torch.stack([pooled(c[i], masks[i]) for i in range(3)], 1),
            "specific": torch.stack([pooled(p[i], masks[i]) for i in range(3)], 1),
            "discriminator_probs": d_probs(c),
            "discriminator_probs_specific": d_probs(p),
        }
    out = model.analysis(batch)
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value, msg=key)
    assert not torch.allclose(expected["common"], expected["specific"], atol=1e-3)
    assert not torch.allclose(expected["discriminator_probs"], expected["discriminator_probs_specific"], atol=1e-3)


def test_analysis_runs_in_eval_mode_and_restores_the_mode() -> None:
    """`analysis` (docstring: "Runs in eval mode"): called on a model in training mode with dropout it gives the
    eval-mode values, and the model is back in training mode afterwards."""
    model = model_for().train()  # dropout 0.3 everywhere
    batch = make_batch()
    torch.manual_seed(0)
    during_training = model.analysis(batch)
    assert model.training
    model.eval()
    expected = model.analysis(batch)
    assert not model.training
    for key, value in expected.items():
        torch.testing.assert_close(during_training[key], value, msg=key)


# ------------------------------------------------------------------------------------- CTC (unaligned data)


def test_ctc_loss_reads_the_real_frames_in_order_wherever_the_padding_sits() -> None:
    """`ctc_alignment_loss` (docstring: "padding may sit anywhere"): per sample, the CTC loss of its real frames in
    their order against the targets 1..S; a sample with fewer real frames than S is left out, "mean" averages over
    the samples that remain."""
    g = torch.Generator().manual_seed(0)
    s = 3
    logits = torch.randn(4, 8, s + 1, generator=g)
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 1, 1, 1],  # padding in front
            [1, 1, 0, 0, 1, 1, 0, 1],  # padding in the middle
            [1, 1, 1, 1, 0, 0, 0, 0],  # padding on the right
            [0, 1, 0, 0, 1, 0, 0, 0],  # two real frames < S: left out
        ],
        dtype=torch.bool,
    )
    targets = torch.arange(1, s + 1)[None]
    per_sample = [
        F.ctc_loss(torch.log_softmax(logits[b][mask[b]], -1)[:, None], targets, (int(mask[b].sum()),), (s,), reduction="sum")
        for b in range(3)
    ]
    torch.testing.assert_close(ctc_alignment_loss(logits, mask, "sum"), sum(per_sample))
    torch.testing.assert_close(ctc_alignment_loss(logits, mask, "mean"), sum(per_sample) / 3)


def unaligned_batch() -> Batch:
    """Four samples, every one with at least 5 (= the text length S) real visual and audio frames."""
    lengths = {"text": [5, 4, 5, 3], "visual": [12, 9, 5, 7], "audio": [12, 6, 8, 10]}
    g = torch.Generator().manual_seed(3)
    features, masks = {}, {}
    for m in UNALIGNED.modalities:
        mask = torch.arange(m.max_len)[None] < torch.tensor(lengths[m.name])[:, None]
        features[m.name] = torch.randn(4, m.max_len, m.dim, generator=g) * mask[..., None]
        masks[m.name] = mask
    return Batch(features, masks, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), list("abcd"), torch.arange(4))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_logged_ctc_loss_is_the_whole_batch_value_under_micro_batches(reduction: str, fabric: Fabric) -> None:
    """`train.micro_batch` is exact for L_ctc in both reductions (engine/context.py): a sum over the batch is marked
    as summed, a mean over samples is not, so two chunks of 2 log the value of the whole batch of 4."""
    model = model_for(UNALIGNED, ctc=True, ctc_reduction=reduction, **NO_DROPOUT).train()
    batch = unaligned_batch()
    with torch.no_grad():
        whole = float(model(batch).losses["ctc"])
    model.zero_grad(set_to_none=True)
    logs = run_training_step(model, batch, StepContext(fabric, 0, 0, 1), micro_batch=2)
    assert logs["loss_ctc"] == pytest.approx(whole, rel=1e-5)


# ------------------------------------------------------------------------------------- L_ml (Eq. 16)


def test_multi_label_loss_stays_exact_when_the_logits_saturate() -> None:
    """L_ml is BCE on the logits (mean over B x C), so a confident wrong logit of +60 costs 60 / C per sample, not the
    clamp of log(1 - sigmoid(60)) = log(0) that a BCE on the probabilities would give."""
    model = model_for(**NO_DROPOUT).train()
    batch = make_batch()
    batch.labels.zero_()
    with torch.no_grad():
        model.classifier_weight.zero_()
        model.classifier_bias.fill_(60.0)
    loss = model(batch).losses["ml"]
    assert float(loss.detach()) == pytest.approx(60.0, rel=1e-4)
