"""CARAT: Eq. 16 prediction and the loss components from the model's own pieces, gradients to every block, side
effects (queue, prototypes) only in training, missing modalities without NaN, multi-party targets, every Table 3
ablation for one step, presets, and `mmer train --model carat` on synthetic data and miniature official files."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from mmer import config as cfglib
from mmer.benchmark.ablations import load_ablation_file
from mmer.cli import main
from mmer.data.batch import PartyStructure
from mmer.data.dataset import DataSpec, ModalitySpec
from mmer.errors import ConfigError
from mmer.models.base import is_no_decay
from mmer.models.carat import CARAT, CARATConfig
from mmer.nn.contrastive import modality_label_polarity_ids
from tests.models.carat_setup import SPEC, TINY, make_batch, model_for
from tests.models.helpers import REAL_DATA_PRESETS, train_step, with_missing_modalities

DATASETS = ("mosei-aligned", "mosei-unaligned", "m3ed", "memor-primary", "memor-fine", "synth-party", "synth-dyadic")


def test_prediction_is_eq16_from_the_models_pieces():
    model = model_for().eval()
    batch = make_batch()
    o, _ = model.label_features(batch)
    z = model.autoencoders.encode(o)
    c = model.prototypes.intrinsic(z)
    u, r = model.autoencoders.decode(c), model.autoencoders.decode(z)
    alpha = torch.stack([model.reconstruction.networks[m](torch.cat([u[:, k] if k == m else r[:, k] for k in range(3)], -1)) for m in range(3)], 1)
    beta = torch.stack([model.reconstruction.networks[m](torch.cat([alpha[:, 0], alpha[:, 1], alpha[:, 2]], -1)) for m in range(3)], 1)
    w_beta = torch.einsum("bmcd,mcd->bmc", beta, model.classifier)
    agg = model.aggregator(beta.reshape(6, 3, -1))  # each modality's C label vectors concatenated in label order
    expected = 0.5 * (torch.sigmoid(w_beta).amax(1) + torch.sigmoid(agg).mean(1))
    probs = model.predict_proba(batch)
    torch.testing.assert_close(probs, expected)
    assert probs.shape == (6, 4) and ((probs > 0) & (probs < 1)).all()
    torch.testing.assert_close(model.predict_proba(batch), probs)  # evaluation is deterministic


def test_training_losses_match_the_equations():
    model = model_for(dropout=0.0, attention_dropout=0.0, shuffle_samples=False, shuffle_modalities=True)
    batch = make_batch()
    y = batch.labels
    model.train()
    torch.manual_seed(5)
    out = model(batch)
    model.prototypes.positive.zero_()  # undo the update of that pass: recompute with the same (zero) prototypes
    model.prototypes.negative.zero_()
    lv = model.levels(model.label_features(batch)[0])
    logits = {name: torch.einsum("bmcd,mcd->bmc", x, model.classifier).amax(1) for name, x in lv.named()}
    expected = {
        "clf_o": F.binary_cross_entropy_with_logits(logits["o"], y),
        "clf_alpha": F.binary_cross_entropy_with_logits(logits["alpha"], y),
        "clf_beta": F.binary_cross_entropy_with_logits(logits["beta"], y),
        "rec_autoencoder": sum(F.mse_loss(lv.decoded[:, m], lv.o[:, m]) for m in range(3)),
        "rec_first": sum(F.mse_loss(lv.alpha[:, m], lv.o[:, m]) for m in range(3)),
        "rec_second": sum(F.mse_loss(lv.beta[:, m], lv.o[:, m]) for m in range(3)),
        "agg": F.binary_cross_entropy_with_logits(model.aggregate(lv.beta), y[:, None].expand(6, 3, 4)),
    }
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name], value, msg=name)
    # modality-wise shuffle only: every label vector stays in its sample, so the shuffled labels are y itself
    assert float(out.losses["shuffle"].detach()) > 0
    assert set(out.losses) == {*expected, "shuffle", "contrastive"}
    weights = model.loss_weights()
    assert (weights["clf_o"], weights["clf_alpha"], weights["clf_beta"], weights["shuffle"], weights["rec_second"]) == (0.01, 0.1, 1.0, 0.1, 0.0)


def test_analysis_reconstructed_averages_the_normalised_latents_over_labels():
    """The report's `reconstructed` (t-SNE, CARAT Fig. 5) is En(beta) normalised per label, then averaged over the
    labels: [B, M, d_z], each row of norm at most 1."""
    model = model_for().eval()
    batch = make_batch()
    beta = model.levels(model.label_features(batch)[0]).beta
    expected = F.normalize(model.autoencoders.encode(beta), dim=-1).mean(dim=2)
    out = model.analysis(batch)["reconstructed"]
    torch.testing.assert_close(out, expected)
    assert out.shape == (6, 3, 8) and bool((out.norm(dim=-1) <= 1 + 1e-6).all())


def test_gradients_reach_every_trainable_block(fabric):
    model = model_for()
    logs = train_step(model, make_batch(), fabric)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    silent = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert silent == []


def test_training_fills_the_queue_and_moves_prototypes_evaluation_does_not(fabric):
    model = model_for(queue_size=1000)
    batch = make_batch()
    model.eval()
    model.predict_proba(batch)
    assert int(model.contrastive.queue_filled) == 0 and float(model.prototypes.positive.abs().sum()) == 0.0
    train_step(model, batch, fabric)
    # 3 levels x 3 modalities x 4 labels per sample; sample 2 lacks visual: its 3 visual views stay out
    assert int(model.contrastive.queue_filled) == (6 * 9 - 3) * 4
    assert float(model.prototypes.positive.abs().sum()) > 0 and float(model.prototypes.negative.abs().sum()) > 0


def test_prototypes_follow_the_base_latents_only():
    """With momentum 0 the prototype of a class is the normalised En(o) of its last member in the batch."""
    model = model_for(prototype_momentum=0.0, dropout=0.0, attention_dropout=0.0).train()
    batch = make_batch()
    model(batch)
    z = F.normalize(model.autoencoders.encode(model.label_features(batch)[0]), dim=-1)  # [B, M, C, d_z]
    y = batch.labels
    for j in range(4):
        last_pos = int(torch.nonzero(y[:, j] > 0.5).max())
        last_neg = int(torch.nonzero(y[:, j] < 0.5).max())
        torch.testing.assert_close(model.prototypes.positive[:, j], z[last_pos, :, j])
        torch.testing.assert_close(model.prototypes.negative[:, j], z[last_neg, :, j])


def test_contrastive_classes_are_modality_label_polarity(monkeypatch):
    model = model_for().train()
    seen = {}

    def spy(embeddings, class_ids, enqueue=True):
        seen["emb"], seen["ids"] = embeddings, class_ids
        return embeddings.sum() * 0.0

    monkeypatch.setattr(model.contrastive, "forward", spy)
    batch = make_batch()
    batch.masks["visual"][2] = True  # every modality present: 9 views per sample, in (sample, view, label) order
    model(batch)
    expected = modality_label_polarity_ids(batch.labels, [0, 1, 2] * 3).reshape(-1)
    assert torch.equal(seen["ids"], expected)
    assert seen["emb"].shape == (6 * 9 * 4, 8)


def test_missing_modalities_never_give_nan(fabric):
    model = model_for()
    batch = with_missing_modalities(make_batch())  # sample 3 has nothing, no sample has audio
    logs = train_step(model, batch, fabric)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(model.eval().predict_proba(batch)).all()


def test_padding_is_ignored():
    batch = make_batch()
    noisy = batch.replace(features={m: torch.where(batch.masks[m][..., None], x, torch.randn_like(x)) for m, x in batch.features.items()})
    model = model_for().eval()
    torch.testing.assert_close(model.predict_proba(batch), model.predict_proba(noisy))


def test_multi_party_target_marker_and_placeholder_target():
    spec = DataSpec("party", ("x", "y", "z"), tuple(ModalitySpec(n, d, 6) for n, d in (("text", 5), ("visual", 4), ("audio", 3))), personality_dim=2, multi_party=True)
    person = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4)
    segment = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    target = torch.zeros(4, 6, dtype=torch.bool)
    target[:, 4] = True
    batch = make_batch(spec, b=4).replace(party=PartyStructure(person, segment, target))
    for m in ("text", "audio"):
        batch.masks[m][:, 3:] = False  # the listener (person 1) has no text or audio, like synth-party
        batch.features[m][:, 3:] = 0.0
    batch.masks["visual"][0, 4] = False  # sample 0's target has no observation at all
    model = model_for(spec).eval()
    probs = model.predict_proba(batch)
    assert torch.isfinite(probs).all()
    moved = batch.replace(party=PartyStructure(person, segment, target.roll(-3, dims=1)))  # the speaker instead
    assert not torch.allclose(model.predict_proba(moved)[0], probs[0])  # a missing target still locates itself


def test_classifier_only_aggregation_keeps_gradients_out_of_the_features(fabric):
    weights = {k: 0.0 for k in ("weight_clf_o", "weight_clf_alpha", "weight_clf_beta", "weight_contrastive", "weight_rec")}
    for mode, reaches in (("joint", True), ("classifier", False)):
        model = model_for(agg_gradient=mode, **weights)
        train_step(model, make_batch(), fabric)
        assert model.aggregator[0].weight.grad.abs().sum() > 0
        attention = model.label_attention["text"].queries.weight.grad
        assert (attention is not None and float(attention.abs().sum()) > 0) == reaches, mode


def test_ctc_pseudo_alignment_for_unaligned_sequences(fabric):
    spec = DataSpec("unaligned", ("a", "b"), (ModalitySpec("text", 6, 5), ModalitySpec("visual", 4, 20), ModalitySpec("audio", 3, 20)))
    model = model_for(spec, ctc="text")
    assert set(model.aligners) == {"visual", "audio"} and model.aligners["visual"].out_len == 5
    assert model.encoders["visual"].embedding.position.num_embeddings == 5
    logs = train_step(model, make_batch(spec, b=4), fabric)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert model.aligners["audio"].lstm.weight_ih_l0.grad.abs().sum() > 0
    same = model_for(spec, ctc="same")
    assert same.aligners["audio"].out_len == 20


def test_weight_decay_groups_follow_the_official_code():
    """BertAdam decays every name without bias/LayerNorm — including the input LayerNorm weight (ref §4) — and,
    since the rule is a substring test, not the CTC LSTMs' `bias_ih_l*` / `bias_hh_l*`."""
    spec = DataSpec("toy", ("a", "b"), (ModalitySpec("text", 7, 5), ModalitySpec("visual", 4, 9), ModalitySpec("audio", 5, 8)))
    lstm = {n for n, p in model_for(spec, ctc="text").named_parameters() if "lstm" in n}
    assert {n for n in lstm if is_no_decay(n)} == {n for n in lstm if ".bias_" in n} != set()
    model = model_for()
    decayed = {n for n, _ in model.named_parameters() if not is_no_decay(n)}
    assert "input_norms.text.weight" in decayed and "classifier" in decayed
    assert "label_attention.text.queries.weight" in decayed
    assert "encoders.text.embedding.norm.weight" not in decayed and "input_norms.text.bias" not in decayed
    assert "encoders.text.layers.0.ffn.norm.weight" not in decayed


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="weight_contrastive=0"):
        model_for(autoencoders=False)
    party = DataSpec("party", ("x",), (ModalitySpec("text", 3, 4),), multi_party=True)
    with pytest.raises(ConfigError, match="multi-party"):
        model_for(party, ctc="text")
    with pytest.raises(ConfigError, match="ctc_reference 'words'"):
        model_for(ctc="text", ctc_reference="words")
    with pytest.raises(ConfigError, match="divisible"):
        model_for(num_heads=3)
    with pytest.raises(ConfigError, match="weight_shuffle"):
        model_for(weight_shuffle=-1.0)


# ----------------------------------------------------------------------------------------------- ablations


def table3_rows() -> dict[str, list[str]]:
    return yaml.safe_load((resources.files("mmer") / "configs" / "ablations" / "carat_table3.yaml").read_text())


def apply_overrides(overrides: list[str]) -> CARATConfig:
    data = {"model": cfglib.to_dict(CARATConfig(**TINY))}
    for text in overrides:
        keys, value = cfglib.parse_override(text)
        cfglib.set_path(data, keys, value, f"--set {text}")
    return cfglib.from_dict(CARATConfig, data["model"], "model")


EXPECTED_COMPONENTS = {
    "(0) CARAT": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle", "contrastive"},
    "(1) MRM+AGG": {"clf_beta", "agg"},
    "(2) MRM": {"clf_beta"},
    "(3) AGG": {"agg"},
    "(4) w/o L_cl": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle"},
    "(5) w/o En/De": {"clf_o", "clf_alpha", "clf_beta", "rec_first", "rec_second", "agg", "shuffle"},
    "(6) w/o L_rec": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle", "contrastive"},
    "(7) w/o first-level reconstruction": {"clf_o", "clf_beta", "rec_autoencoder", "rec_second", "agg", "shuffle", "contrastive"},
    "(8) w/o second-level reconstruction": {"clf_o", "clf_beta", "rec_autoencoder", "rec_first", "agg", "shuffle", "contrastive"},
    "(9) w/o all reconstruction": {"clf_beta", "rec_autoencoder", "agg", "shuffle", "contrastive"},
    "(10) w/o sample-wise shuffle": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle", "contrastive"},
    "(11) w/o modality-wise shuffle": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "shuffle", "contrastive"},
    "(12) w/o both shuffles": {"clf_o", "clf_alpha", "clf_beta", "rec_autoencoder", "rec_first", "rec_second", "agg", "contrastive"},
}


@pytest.mark.parametrize("row", list(EXPECTED_COMPONENTS))
def test_every_table3_ablation_runs_one_step(row, fabric):
    torch.manual_seed(0)
    model = CARAT(apply_overrides(table3_rows()[row]), SPEC)
    model.train()
    out = model(make_batch())
    assert set(out.losses) == EXPECTED_COMPONENTS[row]
    logs = train_step(model, make_batch(), fabric)
    assert logs and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    g = [p.grad for p in model.parameters() if p.grad is not None]
    assert g and all(torch.isfinite(v).all() for v in g)
    assert model.label_attention["text"].queries.weight.grad.abs().sum() > 0
    probs = model.eval().predict_proba(make_batch())
    assert probs.shape == (6, 4) and torch.isfinite(probs).all()


def test_table3_weights_and_rows():
    rows = table3_rows()
    assert list(rows) == list(EXPECTED_COMPONENTS)
    weights = CARAT(apply_overrides(rows["(6) w/o L_rec"]), SPEC).loss_weights()
    assert weights["rec_autoencoder"] == weights["rec_first"] == weights["rec_second"] == 0.0
    table = load_ablation_file("carat_table3")
    assert table.model == "carat" and len(table.rows) == 13 and table.rows[0].overrides == ()


def agg_by_hand(model: CARAT, o: Tensor) -> Tensor:
    """AGG logits [B, C]: label j's linear score of [o_t,j; o_v,j; o_a,j], the modalities side by side."""
    concat = torch.cat([o[:, k] for k in range(o.shape[1])], dim=-1)  # [B, C, M d]
    return (concat * model.concat_weight).sum(-1) + model.concat_bias


def test_agg_scores_each_label_from_that_labels_features_only():
    """Row (3): a label's score reads that label's features of every modality, never another label's."""
    model = model_for(variant="agg").eval()
    batch = make_batch()
    o, _ = model.label_features(batch)
    torch.testing.assert_close(model.predict_proba(batch), torch.sigmoid(agg_by_hand(model, o)))


def test_mrm_agg_predicts_the_average_of_the_two_scores():
    """Row (1): the prediction is the mean of max_m sigmoid(W_m o_m) and the AGG score, as Eq. 16 averages its two."""
    model = model_for(variant="mrm_agg").eval()
    batch = make_batch()
    o, _ = model.label_features(batch)
    mrm = torch.einsum("bmcd,mcd->bmc", o, model.classifier).amax(1)
    torch.testing.assert_close(model.predict_proba(batch), 0.5 * (torch.sigmoid(mrm) + torch.sigmoid(agg_by_hand(model, o))))


def test_without_first_level_the_second_level_reads_o():
    model = CARAT(apply_overrides(table3_rows()["(7) w/o first-level reconstruction"]), SPEC).eval()
    batch = make_batch()
    o, _ = model.label_features(batch)
    lv = model.levels(o)
    assert lv.alpha is None
    torch.testing.assert_close(lv.beta[:, 1], model.reconstruction.networks[1](torch.cat([o[:, 0], o[:, 1], o[:, 2]], -1)))


# ----------------------------------------------------------------------------------------------- presets, CLI


def test_presets_parse_and_say_where_values_come_from():
    folder = resources.files("mmer") / "configs" / "carat"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(f"{d}.yaml" for d in (*DATASETS, *REAL_DATA_PRESETS))
    for name in names:
        assert (folder / name).read_text().lstrip().startswith("#")
        cfg = cfglib.resolve("carat", name[: -len(".yaml")])
        assert isinstance(cfg.model, CARATConfig)
    paper = cfglib.resolve("carat", "mosei-aligned")
    assert paper.model.layers == {"text": 6, "visual": 4, "audio": 4} and paper.model.queue_size == 8192
    assert (paper.data.batch_size, paper.train.epochs, paper.train.lr, paper.train.optimizer) == (64, 20, 5e-5, "bertadam")
    for dataset in ("mosei-aligned", "mosei-unaligned", "m3ed"):
        assert cfglib.resolve("carat", dataset).model.threshold == 0.25
    assert cfglib.resolve("carat", "mosei-unaligned").model.ctc == "text"


TINY_SETS = ["model.hidden_size=16", "model.latent_size=8", "model.num_heads=2", "model.intermediate_size=16", "model.layers.text=1", "model.layers.visual=1", "model.layers.audio=1", "model.queue_size=128"]


def cli_train(out: Path, dataset: str, *extra: str, root: Path | None = None) -> dict:
    args = ["train", "--model", "carat", "--dataset", dataset, "--out", str(out), "--epochs", "2", "--quiet"]
    args += ["--root", str(root)] if root else []
    for s in [*TINY_SETS, *extra]:
        args += ["--set", s]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["micro_f1"] <= 1.0
    return metrics


def test_mmer_train_and_evaluate_carat_on_the_synthetic_presets(tmp_path, capsys):
    cli_train(tmp_path / "dyadic", "synth-dyadic", "data.options.size=tiny", "data.batch_size=8")
    metrics = cli_train(tmp_path / "party", "synth-party", "data.options.size=tiny", "data.batch_size=8")
    state = torch.load(tmp_path / "party" / "best.pt", weights_only=True)["model_state"]
    assert int(state["contrastive.queue_filled"]) > 0 and float(state["prototypes.positive"].abs().sum()) > 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "party"), "--split", "test"]) == 0
    again = json.loads((tmp_path / "party" / "metrics.json").read_text())
    assert again["test"]["micro_f1"] == pytest.approx(metrics["test"]["micro_f1"])


def test_mmer_train_carat_on_miniature_mosei_files(tmp_path):
    from tests.data.official_files import write_mosei_aligned, write_mosei_unaligned

    write_mosei_aligned(tmp_path / "train_valid_test.pt")
    write_mosei_unaligned(tmp_path / "mosei_senti_data_noalign.pkl")
    cli_train(tmp_path / "aligned", "mosei-aligned", "data.batch_size=4", root=tmp_path)
    cli_train(tmp_path / "unaligned", "mosei-unaligned", "data.batch_size=4", root=tmp_path)


def test_mmer_train_carat_on_miniature_m3ed_files(tmp_path):
    from mmer.data.readers.m3ed import RELEASE_PICKLES
    from tests.data.official_files import write_m3ed_converted, write_m3ed_pickle

    data = write_m3ed_pickle(tmp_path / RELEASE_PICKLES[0])
    cli_train(tmp_path / "release", "m3ed", "data.batch_size=2", root=tmp_path)
    converted = tmp_path / "converted"
    converted.mkdir()
    write_m3ed_converted(converted / "m3ed_data_60.pt", data)
    cli_train(tmp_path / "carat-file", "m3ed", "data.batch_size=2", "data.options.masks=ones", "data.options.modality_names=carat", root=converted)
