"""RAMer: person attention against a per-sample loop, roles, masking, buffers updated only in training, the code's
shuffle and prediction rule, every Table 4 ablation, presets, and `mmer train/evaluate` round trips (with resume)
on tiny synthetic data and miniature official files."""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from mmer import config as cfglib
from mmer.benchmark.ablations import load_ablation_file
from mmer.cli import main
from mmer.data.batch import Batch, PartyStructure
from mmer.engine.context import StepContext
from mmer.errors import ConfigError
from mmer.models.ramer import RAMer, RAMerConfig
from mmer.models.ramer_parts import PersonAttention, target_roles
from mmer.nn.adversarial import orthogonality_loss
from tests.interrupt import interrupt_after_first_epoch
from tests.models.ramer_setup import TINY, first_batch, model_for, no_dropout, with_gaps

TINY_SETS = [f"model.{k}={v}" for k, v in TINY.items()]
CODE = dict(
    personality="code", person_attention=False, target_roles=False, shuffle="code", classifier_input=["gamma"],
    rec_norm="mse", orth_pairs="code", common_semantic="code", contrastive_anchors="pool", queue_init="code",
)  # fmt: skip


def weighted_loss(model: RAMer, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    out = model(batch)
    weights = model.loss_weights()
    return sum(weights[k] * v for k, v in out.losses.items()), out.losses


# ------------------------------------------------------------------------------ person attention and roles


def loop_person_attention(hidden, has, party, personality, tau):
    """Reference: AMER's steps written per sample, modality, segment and person (x [T, w] per sample)."""
    b, m, t, _ = hidden.shape
    out = torch.zeros(b, m, t, hidden.shape[-1] + (0 if personality is None else personality.shape[-1]))
    for i in range(b):
        for k in range(m):
            x = hidden[i, k] * has[i, k, :, None]
            if personality is not None:
                x = torch.cat([x, personality[i]], dim=-1)
            valid = party.person[i] >= 0

            def attend(rows):
                q = x_cur[rows]
                keys = rows[has[i, k, rows]]
                if len(keys) == 0:
                    return q
                w = torch.softmax(q @ x_cur[keys].T / tau, dim=-1)
                return q + w @ x_cur[keys]

            x_cur = x.clone()
            inter = x.clone()
            for s in party.segment[i][valid].unique():
                rows = ((party.segment[i] == s) & valid).nonzero().squeeze(1)
                inter[rows] = attend(rows)
            x_cur = inter
            intra = inter.clone()
            for p in party.person[i][valid].unique():
                rows = ((party.person[i] == p) & valid).nonzero().squeeze(1)
                intra[rows] = attend(rows)
            out[i, k, valid] = intra[valid]
    return out


def party_batch(b: int = 3, d: int = 6, seed: int = 0):
    """Hand-made clips: tokens in shuffled (person, segment) order, padding, missing modalities."""
    g = torch.Generator().manual_seed(seed)
    persons, segments = [3, 2, 2], [2, 3, 1]
    t = max(p * s for p, s in zip(persons, segments)) + 1
    person = torch.full((b, t), -1)
    segment = torch.full((b, t), -1)
    for i, (p, s) in enumerate(zip(persons, segments)):
        cells = torch.stack(torch.meshgrid(torch.arange(p), torch.arange(s), indexing="ij"), -1).reshape(-1, 2)
        cells = cells[torch.randperm(len(cells), generator=g)]
        person[i, : len(cells)], segment[i, : len(cells)] = cells[:, 0], cells[:, 1]
    target = torch.zeros(b, t, dtype=torch.bool)
    target[:, 0] = True
    party = PartyStructure(person, segment, target)
    has = (torch.rand(b, 2, t, generator=g) < 0.6) & party.valid[:, None]
    has[1, 1] = False  # modality 1 absent from clip 1
    hidden = torch.randn(b, 2, t, d, generator=g)
    personality = torch.randn(b, t, d, generator=g)
    return hidden, has, party, personality


@pytest.mark.parametrize("with_personality", [True, False])
def test_person_attention_equals_the_per_sample_loop(with_personality):
    hidden, has, party, personality = party_batch()
    module = PersonAttention(6, with_personality)
    p = personality if with_personality else None
    got = module(hidden, has, party, p)
    reference = loop_person_attention(hidden, has, party, p, math.sqrt(12 if with_personality else 6))
    if module.project is not None:
        reference = module.project(reference)
    valid = party.valid[:, None].expand(-1, 2, -1)
    torch.testing.assert_close(got[valid], reference[valid], rtol=1e-5, atol=1e-5)


def test_missing_modality_is_never_attended_but_still_complemented():
    hidden, has, party, personality = party_batch()
    module = PersonAttention(6, True)
    base = module(hidden, has, party, personality)
    noisy = module(hidden + 100.0 * (~has)[..., None], has, party, personality)  # change only missing cells
    torch.testing.assert_close(base, noisy)
    i, k = 0, 0
    missing = (~has[i, k] & party.valid[i]).nonzero().squeeze(1)
    t = int(missing[0])
    same_segment = (party.segment[i] == party.segment[i, t]) & has[i, k]
    same_person = (party.person[i] == party.person[i, t]) & has[i, k]
    assert (same_segment | same_person).any()  # the hand-made clip gives it something to read
    changed = hidden.clone()
    changed[i, k, same_segment | same_person] += 1.0
    assert not torch.allclose(module(changed, has, party, personality)[i, k, t], base[i, k, t])


def test_roles_mark_person_and_segment_offset_relative_to_the_target():
    person = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, -1]])
    segment = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, -1]])
    target = torch.zeros(1, 9, dtype=torch.bool)
    target[0, 1] = True  # person 0, segment 1
    roles = target_roles(PartyStructure(person, segment, target))
    assert roles.tolist() == [[5, 4, 6, 7, 1, 0, 2, 3, 0]]
    target[0, 6] = True  # a second target (person 1, segment 2): the nearest one counts
    roles = target_roles(PartyStructure(person, segment, target))
    assert roles.tolist() == [[5, 4, 0, 2, 1, 0, 4, 6, 0]]


def test_label_attention_reads_every_token_once_person_attention_has_complemented_it(tiny_party):
    """After person attention a token that lacks modality m holds what its persons and segments gave it (§4.1), so
    label-wise attention keys on every existing token of the clip (party.valid), not only those that had m."""
    model = model_for(tiny_party).eval()
    batch = with_gaps(first_batch(tiny_party))
    keys = {}
    hooks = [
        model.embedding.label_attention[m].register_forward_pre_hook(lambda _, args, m=m: keys.__setitem__(m, args[1]))
        for m in tiny_party.spec.modality_names
    ]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    assert set(keys) == set(tiny_party.spec.modality_names)
    assert all(torch.equal(k, batch.party.valid) for k in keys.values())
    assert not any(torch.equal(batch.masks[m], batch.party.valid) for m in keys)  # the masks would be other keys


# ------------------------------------------------------------------------------------ forward and losses


@pytest.mark.parametrize("dataset", ["party", "dyadic"])
@pytest.mark.parametrize("mode", ["paper", "code"])
def test_losses_finite_and_gradients_reach_every_block(dataset, mode, tiny_party, tiny_dyadic):
    bundle = tiny_party if dataset == "party" else tiny_dyadic
    model = model_for(bundle, **(CODE if mode == "code" else {}))
    batch = first_batch(bundle)
    total, losses = weighted_loss(model, batch)
    expected = {"cls_alpha", "cls_beta", "cls_gamma", "rec", "scl", "suf", "adv_common", "adv_specific", "orth", "cml"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    total.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if dataset == "dyadic" or mode == "code":
        silent = [n for n in silent if not n.startswith("embedding.roles")]
    assert silent == []


def test_probabilities_follow_the_code_prediction_rule(tiny_party):
    model = model_for(tiny_party).eval()
    batch = first_batch(tiny_party)
    with torch.no_grad():
        probs = model(batch).probs
        s = model.represent(batch)
        head = torch.sigmoid(model.classify(s.head_input)).mean(1)  # every modality present in these clips
        top = torch.sigmoid(model.level_logits(s.x_gamma).max(dim=1).values)
    assert s.present.all()
    torch.testing.assert_close(probs, (head + top) / 2)
    assert probs.shape == (batch.size, 9) and ((probs > 0) & (probs < 1)).all()


def test_code_shuffle_is_the_unshuffled_loss_of_the_gamma_head(tiny_dyadic):
    model = model_for(tiny_dyadic, **CODE)
    batch = first_batch(tiny_dyadic)
    model.train()
    s = model.represent(batch)  # before the forward pass below moves the prototypes
    out = model(batch)
    logits = model.classify(s.head_input)
    torch.testing.assert_close(s.head_input, s.x_gamma)
    expected = F.binary_cross_entropy_with_logits(logits, batch.labels[:, None].expand_as(logits))
    torch.testing.assert_close(out.losses["suf"], expected)


def test_stack_shuffle_recombines_common_and_specific_features(tiny_dyadic, monkeypatch):
    import mmer.models.ramer as ramer_module

    seen = {}
    real = ramer_module.label_shuffle

    def spy(features, labels, mode, **kw):
        seen["mode"], seen["width"] = mode, features.shape[-1]
        out = real(features, labels, mode, **kw)
        seen["moved"] = not torch.equal(out[0], features)
        return out

    monkeypatch.setattr(ramer_module, "label_shuffle", spy)
    model = model_for(tiny_dyadic)
    weighted_loss(model, first_batch(tiny_dyadic))
    assert seen == {"mode": "stack", "width": 2 * TINY["hidden_size"], "moved": True}


def test_finetune_keeps_the_shuffle_loss_out_of_the_representation(tiny_dyadic):
    batch = first_batch(tiny_dyadic)
    grads = {}
    for training in ("joint", "finetune"):
        zero = {k: 0.0 for k in RAMerConfig.__dataclass_fields__ if k.startswith("lambda_") and k != "lambda_suf"}
        model = model_for(tiny_dyadic, shuffle_training=training, **zero)
        total, _ = weighted_loss(model, batch)
        total.backward()
        grads[training] = {n: p.grad for n, p in model.named_parameters()}
    assert grads["joint"]["embedding.encoders.text.embedding.projection.weight"].abs().sum() > 0
    assert grads["finetune"]["embedding.encoders.text.embedding.projection.weight"] is None
    assert grads["finetune"]["classifier.0.weight"].abs().sum() > 0


def test_missing_modalities_give_finite_outputs_and_are_left_out(tiny_party):
    model = model_for(tiny_party)
    batch = first_batch(tiny_party)
    masks = dict(batch.masks)
    masks["audio"] = torch.zeros_like(masks["audio"])  # audio absent everywhere
    masks["text"] = masks["text"].clone()
    masks["text"][0] = False
    masks["visual"] = masks["visual"].clone()
    masks["visual"][0] = False  # sample 0 has no audio, no text and no visual at all
    features = {m: x * masks[m][..., None] for m, x in batch.features.items()}
    broken = batch.replace(features=features, masks=masks)
    total, losses = weighted_loss(model, broken)
    assert all(torch.isfinite(v) for v in losses.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        s = model.represent(broken)
        probs = model(broken).probs
    assert torch.isfinite(probs).all()
    assert not s.present[:, 2].any() and not s.present[0].any()
    assert s.x_alpha[:, 2].abs().sum() == 0 and s.specific[:, 2].abs().sum() == 0
    assert s.x_gamma[:, 2].abs().sum() > 0  # the reconstruction restores what is missing
    only_a = model.max_over_modalities(torch.tensor([[[1.0], [5.0]]]), torch.tensor([[True, False]]))
    assert only_a.tolist() == [[1.0]]


def test_buffers_change_only_in_training_and_eval_is_deterministic(tiny_party):
    model = model_for(tiny_party)
    batch = first_batch(tiny_party)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        first, second = model(batch).probs, model(batch).probs
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    weighted_loss(model, batch)
    after = model.state_dict()
    assert int(after["contrastive.queue_filled"]) > 0
    assert not torch.equal(after["prototypes.positive"], before["prototypes.positive"])


def test_padding_and_masked_values_do_not_change_predictions(tiny_dyadic):
    model = model_for(tiny_dyadic).eval()
    batch = first_batch(tiny_dyadic)
    noisy = batch.replace(features={m: torch.where(batch.masks[m][..., None], x, torch.randn_like(x)) for m, x in batch.features.items()})
    with torch.no_grad():
        torch.testing.assert_close(model(batch).probs, model(noisy).probs)


def test_the_target_decides_the_prediction_in_multi_party_clips(tiny_party):
    model = model_for(tiny_party).eval()
    batch = first_batch(tiny_party)
    moved = batch.party.target.roll(1, dims=1) & batch.party.valid
    moved[~moved.any(1), 0] = True
    other = batch.replace(party=PartyStructure(batch.party.person, batch.party.segment, moved))
    with torch.no_grad():
        assert not torch.allclose(model(batch).probs, model(other).probs)


def test_analysis_keys_and_shapes(tiny_party):
    model = model_for(tiny_party)
    batch = first_batch(tiny_party)
    out = model.analysis(batch)
    b, m, c, d = batch.size, 3, 9, TINY["hidden_size"]
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "common": (b, m, d), "specific": (b, m, d), "reconstructed": (b, m, TINY["latent_size"]),
        "modality_label": (b, m, c), "discriminator_probs": (b, m, m),
    }  # fmt: skip
    torch.testing.assert_close(out["discriminator_probs"].sum(-1), torch.ones(b, m))
    assert model.training  # analysis restores the mode


def test_analysis_gives_the_common_and_specific_features(tiny_party):
    """The report's "common" and "specific" are C^m and S^m averaged over the label slots, not only the right shapes."""
    model = model_for(tiny_party)
    batch = first_batch(tiny_party)
    out = model.analysis(batch)
    with torch.no_grad():
        s = model.eval().represent(batch)
    torch.testing.assert_close(out["common"], s.common.mean(dim=2))
    torch.testing.assert_close(out["specific"], s.specific.mean(dim=2))
    assert not torch.allclose(out["common"], out["specific"])


def test_loss_weights_apply_lambda_rec_to_the_gamma_reconstruction_term(tiny_dyadic):
    """rec_gamma weighs the code's ||X_alpha - X_gamma|| relative to lambda_r: its weight is lambda_r x rec_gamma."""
    model = model_for(tiny_dyadic, lambda_rec=0.01, rec_gamma=1.0)
    assert model.loss_weights() == {
        "cls_alpha": 0.01, "cls_beta": 0.1, "cls_gamma": 1.0, "rec": 0.01, "rec_gamma": 0.01, "scl": 1.0,
        "suf": 1.0, "unshuffled": 0.0, "adv_common": 0.01, "adv_specific": 0.01, "orth": 5e-6, "cml": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize("rec_target", ["detached", "joint"])
def test_reconstruction_targets_get_no_gradient_unless_joint(rec_target, tiny_dyadic, monkeypatch):
    """Deviation 4: by default L_rec trains the reconstructions towards X_alpha but never moves X_alpha (joint
    targets collapse it); rec_target=joint (code) lets L_rec pull X_alpha too."""
    model = no_dropout(model_for(tiny_dyadic, rec_target=rec_target))
    real, target = model.represent, {}

    def spy(batch):  # X_alpha swapped for a leaf after the reconstructions used it: only the target path reaches it
        s = real(batch)
        target["x"] = s.x_alpha.detach().requires_grad_()
        return dataclasses.replace(s, x_alpha=target["x"])

    monkeypatch.setattr(model, "represent", spy)
    rec = model(first_batch(tiny_dyadic)).losses["rec"]
    (grad,) = torch.autograd.grad(rec, target["x"], allow_unused=True)
    if rec_target == "detached":
        assert grad is None
    else:
        assert grad is not None and grad.abs().sum() > 0


def test_alpha_level_loss_takes_the_max_over_present_modalities_only(tiny_party):
    """Eq. 8 with missing modalities: S^alpha is the max over the modalities a sample has; an absent X_alpha = 0
    must not enter the max with its logit 0."""
    model = no_dropout(model_for(tiny_party))
    batch = with_gaps(first_batch(tiny_party))
    s = model.represent(batch)
    got = model(batch).losses["cls_alpha"]
    logits = model.level_logits(s.x_alpha)  # [B, M, C]
    expected = F.binary_cross_entropy_with_logits(model.max_over_modalities(logits, s.present), batch.labels)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, F.binary_cross_entropy_with_logits(logits.max(dim=1).values, batch.labels))


def test_prediction_averages_c_zeta_over_present_modalities_only(tiny_party):
    """p = (mean over the modalities a sample has of sigmoid(c_zeta([C^m; S^m])) + sigmoid(S^gamma)) / 2."""
    model = model_for(tiny_party).eval()
    batch = with_gaps(first_batch(tiny_party))
    with torch.no_grad():
        probs = model(batch).probs
        s = model.represent(batch)
        head = torch.sigmoid(model.classify(s.head_input))  # [B, M, C]
        top = torch.sigmoid(model.level_logits(s.x_gamma).max(dim=1).values)  # X_gamma exists for every modality
    expected = torch.stack([(head[b, s.present[b]].mean(0) + top[b]) / 2 for b in range(batch.size)])
    torch.testing.assert_close(probs, expected)
    assert not torch.allclose(probs, (head.mean(1) + top) / 2)


def test_specific_adversarial_loss_leaves_out_absent_modalities(tiny_party):
    """L_S = sum_m CE(D(S^m), m) over the samples that have m: an absent S^m is 0, not a feature of modality m."""
    model = no_dropout(model_for(tiny_party))
    batch = with_gaps(first_batch(tiny_party))
    s = model.represent(batch)
    got = model(batch).losses["adv_specific"]

    def l_s(keep):  # keep [B, M]: which samples' S^m count
        return sum(
            F.cross_entropy(model.discriminator(x[k]).flatten(0, 1), torch.full((int(k.sum()) * x.shape[1],), m))
            for m, (x, k) in enumerate(zip(s.specific.unbind(1), keep.unbind(1)))
        )

    torch.testing.assert_close(got, l_s(s.present))
    assert not torch.allclose(got, l_s(torch.ones_like(s.present)))


@pytest.mark.parametrize("lambd", [1.0, 0.5])
def test_gradient_reversal_flips_the_common_generators_discriminator_gradient(lambd, tiny_party):
    """L_C (Eq. 2) trains D to tell the modalities from C^m while G, through the GRL, gets -grl_lambda times that
    gradient (it learns to hide the modality); D's own gradient is unchanged."""
    model = no_dropout(model_for(tiny_party, grl_lambda=lambd))
    batch = first_batch(tiny_party)
    generator, disc = list(model.generator.parameters()), list(model.discriminator.parameters())
    s = model.represent(batch)
    plain = model.discriminator.modality_loss(list(s.common.unbind(1)))  # the same loss without reversal
    adv_common = model(batch).losses["adv_common"]
    torch.testing.assert_close(adv_common, plain)  # the reversal is the identity in the forward pass
    reversed_ = torch.autograd.grad(adv_common, generator + disc)
    straight = torch.autograd.grad(plain, generator + disc)
    for i, (r, g) in enumerate(zip(reversed_, straight)):
        torch.testing.assert_close(r, -lambd * g if i < len(generator) else g)
    assert all(g.abs().sum() > 0 for g in straight)


def test_code_orthogonality_adds_the_specific_specific_pairs(tiny_party):
    """orth_pairs=code: L_orth is the nn orthogonality loss with the code's pairs (C^m-S^m and S^m-S^n)."""
    model = no_dropout(model_for(tiny_party, orth_pairs="code"))
    batch = first_batch(tiny_party)
    s = model.represent(batch)
    got = model(batch).losses["orth"]
    commons, specifics = list(s.common.unbind(1)), list(s.specific.unbind(1))
    masks = [s.present[:, m, None].expand(-1, s.common.shape[2]) for m in range(s.present.shape[1])]
    torch.testing.assert_close(got, orthogonality_loss(commons, specifics, masks, "code"))
    assert not torch.allclose(got, orthogonality_loss(commons, specifics, masks, "paper"))


def test_weight_decay_groups_follow_the_official_bertadam_grouping(tiny_dyadic):
    model = model_for(tiny_dyadic)
    groups = model.param_groups(0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    assert "embedding.encoders.text.input_norm.weight" in decayed  # the code's norm2d.weight is decayed
    assert "embedding.encoders.text.embedding.norm.weight" not in decayed  # encoder LayerNorms are not
    assert not any(n.endswith("bias") for n in decayed)


def test_bad_settings_are_clear_errors(tiny_party):
    with pytest.raises(ConfigError, match="fusion_order"):
        model_for(tiny_party, fusion_order=["text", "video", "audio"])
    with pytest.raises(ConfigError, match="classifier_input contains 'common'"):
        model_for(tiny_party, use_common=False)
    with pytest.raises(ConfigError, match="layers must give a layer count"):
        model_for(tiny_party, layers=[2, 2])
    with pytest.raises(ConfigError, match="ctc_align"):
        model_for(tiny_party, ctc_align=True)


# ------------------------------------------------------------------------------------- ablations, presets


def table4_rows() -> dict[str, list[str]]:
    return yaml.safe_load((resources.files("mmer") / "configs" / "ablations" / "ramer_table4.yaml").read_text())


def apply_overrides(overrides: list[str]) -> RAMerConfig:
    data = {"model": cfglib.to_dict(RAMerConfig(**TINY))}
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    return cfglib.from_dict(RAMerConfig, data["model"], "model")


@pytest.mark.parametrize("row", list(table4_rows()))
def test_every_table4_ablation_runs_one_step(row, tiny_party, fabric):
    torch.manual_seed(0)
    model = RAMer(apply_overrides(table4_rows()[row]), tiny_party.spec)
    model.train()
    ctx = StepContext(fabric, 0, 0, 1)
    logs = model.training_step(first_batch(tiny_party), ctx)
    assert ctx.backward_calls == 1 and all(math.isfinite(v) for v in logs.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_table4_file_loads_in_the_benchmark_runner():
    table = load_ablation_file("ramer_table4")
    assert table.model == "ramer" and len(table.rows) == 11
    assert table.rows[-1].overrides == ()


PRESETS = ("mosei-aligned", "mosei-unaligned", "m3ed", "memor-primary", "memor-fine", "synth-party", "synth-dyadic")


@pytest.mark.parametrize("dataset", PRESETS)
def test_presets_resolve_and_say_where_values_come_from(dataset):
    text = (resources.files("mmer") / "configs" / "ramer" / f"{dataset}.yaml").read_text()
    assert text.lstrip().startswith("#")
    cfg = cfglib.resolve("ramer", dataset)
    assert isinstance(cfg.model, RAMerConfig)
    if dataset == "mosei-aligned":
        assert (cfg.model.threshold, cfg.model.num_layers, cfg.model.hidden_size, cfg.model.queue_size) == (0.25, 3, 256, 8192)
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.eps, cfg.train.epochs, cfg.data.batch_size) == ("bertadam", 5e-5, 1e-6, 150, 64)
    if cfg.train.optimizer == "bertadam":
        assert cfg.train.eps == 1e-6, "the official BertAdam's epsilon"


# ------------------------------------------------------------------------------------------ through the CLI


def cli_train(out: Path, dataset: str, *extra: str, root: Path | None = None) -> dict:
    args = ["train", "--model", "ramer", "--dataset", dataset, "--out", str(out), "--quiet"]
    args += ["--root", str(root)] if root else []
    for s in [*TINY_SETS, *extra]:
        args += ["--set", s]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def party_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ramer") / "party"
    cli_train(out, "synth-party", "data.options.size=tiny", "data.batch_size=8", "train.epochs=2", "train.lr=3e-3")
    return out


def test_train_then_evaluate_reproduces_metrics_and_drops_modalities(party_run, capsys):
    saved = json.loads((party_run / "metrics.json").read_text())
    assert main(["evaluate", "--run", str(party_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == saved["test"]
    assert main(["evaluate", "--run", str(party_run), "--drop-modalities", "text,audio", "--json"]) == 0
    dropped = json.loads(capsys.readouterr().out)
    assert 0.0 <= dropped["micro_f1"] <= 1.0
    ckpt = torch.load(party_run / "best.pt", weights_only=True)
    assert {"prototypes.positive", "contrastive.queue", "contrastive.queue_ids"} <= set(ckpt["model_state"])


def test_resume_after_interruption_equals_uninterrupted(party_run, tmp_path, monkeypatch):
    interrupt_after_first_epoch(monkeypatch)
    out = tmp_path / "interrupted"
    args = ["train", "--model", "ramer", "--dataset", "synth-party", "--out", str(out), "--quiet"]
    for s in [*TINY_SETS, "data.options.size=tiny", "data.batch_size=8", "train.epochs=2", "train.lr=3e-3"]:
        args += ["--set", s]
    assert main(args) == 130
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert (out / "metrics.json").read_text() == (party_run / "metrics.json").read_text()


def test_mmer_train_ramer_on_dyadic_and_code_options(tmp_path):
    code_sets = [f"model.{k}={json.dumps(v)}" for k, v in CODE.items() if k not in ("personality", "person_attention", "target_roles")]
    metrics = cli_train(tmp_path / "dyadic", "synth-dyadic", "data.options.size=tiny", "data.batch_size=8", "train.epochs=1", *code_sets)
    assert 0.0 <= metrics["test"]["micro_f1"] <= 1.0


def test_mmer_train_ramer_on_miniature_mosei_files(tmp_path):
    from tests.data.official_files import write_mosei_aligned

    write_mosei_aligned(tmp_path / "train_valid_test.pt")
    cli_train(tmp_path / "run", "mosei-aligned", "data.batch_size=4", "train.epochs=1", root=tmp_path)


@pytest.mark.parametrize("samples", ["annotation", "clip"])
def test_mmer_train_ramer_on_miniature_memor_files(tmp_path, samples):
    from tests.data.official_files import write_memor

    write_memor(tmp_path / "MEmoR")
    extra = ["data.batch_size=4", "train.epochs=1", f"data.options.samples={samples}", "model.layers=[1, 1, 1]", "model.personality_layers=1"]
    if samples == "clip":
        extra += [f"model.{k}={json.dumps(v)}" for k, v in CODE.items()]
    cli_train(tmp_path / "run", "memor-primary", *extra, root=tmp_path / "MEmoR")


def test_gradients_repeat_exactly_with_two_threads(tiny_party):
    """Same seed, same batch, 2 threads -> bitwise the same gradients (the role bias used to be gathered by
    indexing, whose CPU backward accumulates in a thread-dependent order)."""
    data = tiny_party.splits["train"]
    batch = data.batch(torch.arange(96) % len(data))  # large enough for the CPU kernels to split work across threads
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(6):
            model = model_for(tiny_party)
            torch.manual_seed(1)  # the forward pass draws (shuffles)
            weighted_loss(model, batch)[0].backward()
            grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(threads)
    assert grads[0]["embedding.role_bias"].abs().sum() > 0
    for other in grads[1:]:
        assert all(torch.equal(grads[0][n], other[n]) for n in grads[0])
