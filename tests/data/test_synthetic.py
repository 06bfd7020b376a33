"""The synthetic benchmark: determinism, structure, missing modalities, oracle exactness, references, I/O and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import f1_score

from mmer.cli import main
from mmer.data.dataset import DatasetBundle, SplitData, spec_from_splits
from mmer.data.load import load_dataset
from mmer.data.npz_format import read_npz_dir, write_npz_dir
from mmer.data.readers.synthetic import SynthPartyOptions
from mmer.data.synthetic import PRESETS, draw, dyadic, generate, party
from mmer.data.synthetic.labels import LabelModel, coupling_matrix
from mmer.data.synthetic.oracle import PartyPosterior, dyadic_posterior, party_posterior
from mmer.data.synthetic.reference import chance_scores, oracle_scores
from mmer.errors import ConfigError, DataError


def split_arrays(split: SplitData) -> dict[str, object]:
    out: dict[str, object] = {f"feat.{m}": x for m, x in split.features.items()}
    out.update({f"mask.{m}": x for m, x in split.masks.items()})
    out.update(labels=split.labels, clip_index=split.clip_index, ids=split.ids)
    for name in ("person", "segment", "target", "personality"):
        if getattr(split, name) is not None:
            out[name] = getattr(split, name)
    return out


def assert_same_bundle(a: DatasetBundle, b: DatasetBundle) -> None:
    assert a.spec == b.spec and a.reference == b.reference
    for name in ("train", "valid", "test"):
        left, right = split_arrays(a.splits[name]), split_arrays(b.splits[name])
        assert left.keys() == right.keys()
        for key in left:
            x, y = left[key], right[key]
            assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y), f"{name}.{key} differs"


# ------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("preset", ["synth-party", "synth-dyadic"])
def test_same_seed_same_data_and_other_seed_other_data(preset):
    first, again, other = (generate(preset, seed=s, size="tiny") for s in (5, 5, 6))
    assert_same_bundle(first, again)
    for name in ("train", "test"):
        a, b = first.splits[name], other.splits[name]
        assert a.labels.shape != b.labels.shape or not torch.equal(a.labels, b.labels)
        assert a.features["visual"].shape[1:] == b.features["visual"].shape[1:]  # same layout, other draws
        assert not torch.equal(a.features["visual"][:4], b.features["visual"][:4])
    assert first.source != other.source


def test_unknown_preset_or_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="did you mean 'synth-party'"):
        generate("synth-partyy")
    with pytest.raises(ConfigError, match="unknown synthetic size 'huge'.*valid: default, large, tiny"):
        generate("synth-dyadic", size="huge")


# -------------------------------------------------------------------------------------------- structure


def test_party_bundle_is_valid_and_laid_out_like_memor(tiny_party):
    tiny_party.validate()
    spec = tiny_party.spec
    assert spec.label_names == party.EMOTIONS and spec.modality_names == ("text", "visual", "audio")
    assert spec.multi_party and spec.personality_dim == party.PERSONALITY_DIM
    world = party.party_world()
    for split in tiny_party.splits.values():
        person, segment = split.person.numpy(), split.segment.numpy()
        for k in range(split.num_clips):
            real = person[k] >= 0
            persons, segments = person[k, real].max() + 1, segment[k, real].max() + 1
            assert 2 <= persons <= 4 and 3 <= segments <= 6
            # one token per (person, segment), person-major, then padding
            expected = np.stack(np.meshgrid(np.arange(persons), np.arange(segments), indexing="ij")).reshape(2, -1)
            assert real.sum() == persons * segments and real[: persons * segments].all()
            assert (person[k, real] == expected[0]).all() and (segment[k, real] == expected[1]).all()
            # every segment has exactly one speaker, and the speaker changes from segment to segment
            text = split.masks["text"][k].numpy()
            speakers = [person[k, text & (segment[k] == s)] for s in range(segments)]
            assert all(len(s) == 1 for s in speakers)
            assert all(a[0] != b[0] for a, b in zip(speakers, speakers[1:]))
            # personality: one of the characters' vectors, the same for all tokens of a person
            traits = split.personality[k].numpy()
            for p in range(persons):
                rows = traits[person[k] == p]
                assert np.allclose(rows, rows[0]) and np.isclose(world.personalities, rows[0]).all(axis=1).any()
            # samples: every person once, all at the same moment
            samples = (split.clip_index == k).nonzero()[:, 0]
            cells = split.target[samples].int().argmax(dim=1).numpy()
            assert split.target[samples].sum(dim=1).eq(1).all()
            assert sorted(person[k, cells]) == list(range(persons)) and len(set(segment[k, cells])) == 1


def test_dyadic_bundle_has_real_lengths_and_all_modalities(tiny_dyadic):
    tiny_dyadic.validate()
    assert tiny_dyadic.spec.label_names == dyadic.EMOTIONS and not tiny_dyadic.spec.multi_party
    for split in tiny_dyadic.splits.values():
        mask = split.masks["text"]
        assert all(torch.equal(split.masks[m], mask) for m in split.masks)
        lengths = mask.sum(dim=1)
        assert lengths.min() >= dyadic.MIN_LEN and lengths.max() <= dyadic.MAX_LEN
        assert torch.equal(mask, torch.arange(mask.shape[1])[None, :] < lengths[:, None])  # real steps first
        assert split.labels.sum(dim=1).min() >= 1


@pytest.mark.parametrize("fixture", ["tiny_party", "tiny_dyadic"])
def test_missing_tokens_are_exact_zeros_and_present_ones_are_not(fixture, request):
    bundle = request.getfixturevalue(fixture)
    for split in bundle.splits.values():
        for m, x in split.features.items():
            mask = split.masks[m]
            assert torch.count_nonzero(x[~mask]) == 0
            assert (x[mask].abs().sum(dim=-1) > 0).all()


def test_non_speakers_have_no_text_or_audio_and_some_tokens_have_nothing(tiny_party):
    split = tiny_party.splits["train"]
    text, audio, visual = (split.masks[m] for m in ("text", "audio", "visual"))
    real = split.person >= 0
    assert not (audio & ~text).any()  # audio only ever with the speaker's text
    assert (text & ~audio).any()  # speakers sometimes lose audio
    assert (real & ~text & visual).any() and (real & ~text & ~visual).any()  # listeners: face visible or nothing
    assert (text & ~visual).any()


def test_personality_rows_are_zero_on_padding(tiny_party):
    split = tiny_party.splits["valid"]
    assert torch.count_nonzero(split.personality[split.person < 0]) == 0


# ------------------------------------------------------------------ the structure the benchmark rewards


@pytest.fixture(scope="module")
def latent_draw() -> party.PartyClips:
    return party.sample_clips(party.party_world(), 400, np.random.default_rng(0))


def test_label_rates_and_cooccurrence_are_plausible(latent_draw):
    grid = latent_draw.grid
    e = latent_draw.emotions[grid.valid].astype(float)  # [tokens, C]
    rates = e.mean(axis=0)
    assert (rates > 0.05).all() and (rates < 0.5).all(), rates
    assert 1.2 < e.sum(axis=1).mean() < 2.5 and e.sum(axis=1).min() >= 1
    other = e[:, 1:].sum(axis=1) > 0
    assert (e[:, 0] * other).mean() < 0.3 * rates[0] * other.mean()  # neutral mostly stands alone (coupling -2.5)
    joy, trust, anger, disgust = (party.EMOTIONS.index(n) for n in ("joy", "trust", "anger", "disgust"))
    assert (e[:, joy] * e[:, trust]).mean() > 1.5 * rates[joy] * rates[trust]
    assert (e[:, joy] * e[:, anger]).mean() < 0.5 * rates[joy] * rates[anger]
    assert (e[:, anger] * e[:, disgust]).mean() > 1.5 * rates[anger] * rates[disgust]


def test_emotions_depend_on_previous_segment_speaker_and_personality(latent_draw):
    grid, e = latent_draw.grid, latent_draw.emotions
    # inertia: a label felt in the previous segment is far more likely now
    both = grid.valid[:, :, 1:]
    now, before = e[:, :, 1:][both], e[:, :, :-1][both]
    assert (now[before].mean() - now[~before].mean()) > 0.2
    # contagion: a listener's joy follows the speaker's joy
    joy = party.EMOTIONS.index("joy")
    listener = grid.valid & ~grid.is_speaker()
    k, p, s = np.nonzero(listener)
    speaker_joy = e[k, grid.speaker[k, s], s, joy]
    assert e[k, p, s, joy][speaker_joy].mean() - e[k, p, s, joy][~speaker_joy].mean() > 0.2
    # personality: characters differ in their base rates
    k, p, s = np.nonzero(grid.valid)
    char = latent_draw.character[k, p]
    per_char = np.stack([e[k, p, s][char == c].mean(axis=0) for c in range(party.NUM_CHARACTERS)])
    assert (per_char.max(axis=0) - per_char.min(axis=0)).max() > 0.1


# ---------------------------------------------------------------------------------------------- oracles


def boltzmann_logprob(world: party.PartyWorld, bias: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Explicit log p(e | bias) for rows e [n, C] and biases [n, C], by a fresh enumeration."""
    configs = world.labels.configs
    upper = np.triu(world.labels.coupling, 1)

    def energy(x: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (b * x).sum(-1) + np.einsum("...i,ij,...j->...", x, upper, x)

    log_z = logsumexp(energy(configs[None, :, :], bias[:, None, :]), axis=1)
    return energy(e, bias) - log_z


def test_party_conditional_matches_brute_force_enumeration():
    world = party.party_world()
    draw = party.sample_clips(world, 200, np.random.default_rng(4))
    k = int(np.nonzero((draw.grid.num_persons == 3) & (draw.grid.num_segments == 3))[0][0])
    g = draw.grid
    grid = party.PartyGrid(g.valid[k : k + 1], g.speaker[k : k + 1], g.personality[k : k + 1],
                           {m: x[k : k + 1] for m, x in g.present.items()}, {m: x[k : k + 1] for m, x in g.features.items()})
    truth = draw.emotions[k].astype(float)  # [P, S, C]
    fast = PartyPosterior(world, grid).conditional(truth[None])[0]
    configs, own = world.labels.configs, world.bias(grid.personality[0])  # [M, C], [P, C]
    speaker = grid.speaker[0]
    for p, s in zip(*np.nonzero(grid.valid[0])):
        joint = np.zeros(len(configs))
        for m in party.MODALITIES:  # the cell's own observations, with every Gaussian constant
            if grid.present[m][0, p, s]:
                em = world.emissions[m]
                joint += norm.logpdf(grid.features[m][0, p, s], em.mean(configs), em.noise).sum(axis=1)
        for q, t in zip(*np.nonzero(grid.valid[0])):  # every cell's emotion term, with the candidate at (p, s)
            e = np.repeat(truth[None], len(configs), axis=0)
            e[:, p, s] = configs
            bias = np.repeat(own[q][None], len(configs), axis=0)
            if t > 0:
                bias += e[:, q, t - 1] @ world.inertia.T
            if q != speaker[t]:
                bias += e[:, speaker[t], t] @ world.contagion.T
            joint += boltzmann_logprob(world, bias, e[:, q, t])
        brute = np.exp(joint - logsumexp(joint)) @ configs
        np.testing.assert_allclose(fast[p, s], brute, atol=1e-5)


def test_dyadic_posterior_matches_brute_force_enumeration():
    world = dyadic.dyadic_world()
    rng = np.random.default_rng(7)
    c, steps = len(dyadic.EMOTIONS), 2
    emotions = np.zeros((3, c), dtype=bool)
    emotions[0, [0]] = emotions[1, [2, 4]] = emotions[2, [1, 5, 3]] = True
    lengths = np.full(3, steps)
    real = np.arange(dyadic.MAX_LEN) < steps
    active = (rng.random((3, dyadic.MAX_LEN, c)) < 0.6) & emotions[:, None] & real[None, :, None]
    features = {m: world.emissions[m].sample(active, rng) * real[None, :, None] for m in dyadic.MODALITIES}
    split = dyadic.to_split(dyadic.DyadicSamples(emotions, lengths, features), "test")
    fast = dyadic_posterior(world, split)
    fast_late = dyadic_posterior(world, split, fusion="late")

    configs = world.labels.configs  # [M, C] candidate label sets
    patterns = np.array([[(a >> j) & 1 for j in range(c)] for a in range(2**c)], dtype=float)  # [A, C]
    upper = np.triu(world.labels.coupling, 1)
    prior = configs @ world.base_bias + np.einsum("mi,ij,mj->m", configs, upper, configs)  # [M]
    inside = (patterns[None] <= configs[:, None]).all(-1)  # [M, A]
    q = world.activation
    step_given_e = np.where(inside, np.log(q) * patterns.sum(1) + np.log(1 - q) * (configs.sum(1)[:, None] - patterns.sum(1)), -np.inf)

    def log_evidence(i: int, modalities: tuple[str, ...]) -> np.ndarray:
        """[M] log p(x of `modalities` | e) for sample i, summing the two steps' shared activations explicitly."""
        obs = [
            sum(norm.logpdf(split.features[m][i, t].double().numpy(), world.emissions[m].mean(patterns), world.emissions[m].noise).sum(1) for m in modalities)
            for t in range(steps)
        ]  # [A] per step
        joint = (step_given_e + obs[0])[:, :, None] + (step_given_e + obs[1])[:, None, :]  # [M, A, A]
        return logsumexp(joint.reshape(len(configs), -1), axis=1)

    def posterior(log_e: np.ndarray) -> np.ndarray:
        return np.exp(log_e - logsumexp(log_e)) @ configs

    for i in range(3):
        np.testing.assert_allclose(fast[i], posterior(prior + log_evidence(i, dyadic.MODALITIES)), atol=1e-8)
        late = prior + sum(log_evidence(i, (m,)) for m in dyadic.MODALITIES)  # each modality its own activations
        np.testing.assert_allclose(fast_late[i], posterior(late), atol=1e-8)
    assert not np.allclose(fast, fast_late)
    with pytest.raises(ValueError, match="fusion must be 'joint' or 'late'"):
        dyadic_posterior(world, split, fusion="early")


def test_mean_evidence_posterior_sees_only_the_average_step():
    """A sequence and the same steps played twice carry the same mean evidence, twice the summed evidence."""
    world = dyadic.dyadic_world()
    rng = np.random.default_rng(3)
    c = len(dyadic.EMOTIONS)
    emotions = np.zeros((2, c), dtype=bool)
    emotions[:, [1, 5]] = True
    active = np.zeros((2, dyadic.MAX_LEN, c), dtype=bool)
    active[0, :2] = (rng.random((2, c)) < 0.6) & emotions[0]
    active[1, :4] = np.concatenate([active[0, :2], active[0, :2]])
    features = {m: world.emissions[m].sample(active[:1], rng) for m in dyadic.MODALITIES}
    for m, x in features.items():
        x[0, 2:] = 0.0
        features[m] = np.concatenate([x, x], axis=0)
        features[m][1, 2:4] = x[0, :2]
    split = dyadic.to_split(dyadic.DyadicSamples(emotions, np.array([2, 4]), features), "test")
    mean = dyadic_posterior(world, split, evidence="mean")
    np.testing.assert_allclose(mean[0], mean[1], atol=1e-10)
    summed = dyadic_posterior(world, split)
    assert not np.allclose(summed[0], summed[1], atol=1e-3)
    with pytest.raises(ValueError, match="evidence must be 'sum' or 'mean'"):
        dyadic_posterior(world, split, evidence="max")


def test_references_are_the_oracles_scores_and_ordered(tiny_party, tiny_dyadic):
    world = party.party_world()
    test = tiny_party.splits["test"]
    y = test.labels.numpy().astype(int)
    assert tiny_party.reference["ceiling"] == oracle_scores(party_posterior(world, test, "inferred"), y, party.EMOTIONS)
    assert tiny_party.reference["target_only"] == oracle_scores(party_posterior(world, test, "none"), y, party.EMOTIONS)
    for bundle in (tiny_party, tiny_dyadic):
        ref = bundle.reference
        assert ref["ceiling"]["micro_f1"] > ref["chance"]["micro_f1"] + 0.2
        assert 0.1 < ref["chance"]["micro_f1"] < 0.4
    assert tiny_party.reference["target_only"]["micro_f1"] > tiny_party.reference["chance"]["micro_f1"]
    y = tiny_dyadic.splits["test"].labels.numpy().astype(int)
    late = dyadic_posterior(dyadic.dyadic_world(), tiny_dyadic.splits["test"], fusion="late")
    assert tiny_dyadic.reference["late_fusion"] == oracle_scores(late, y, dyadic.EMOTIONS)


def test_context_is_worth_a_clear_margin_on_party():
    world = party.party_world()
    draw = party.sample_clips(world, 150, np.random.default_rng(1))
    test = party.to_split(draw, "test")
    y = test.labels.numpy().astype(int)
    f1 = {ctx: oracle_scores(party_posterior(world, test, ctx, emotions=draw.emotions), y, party.EMOTIONS)["micro_f1"]
          for ctx in ("none", "inferred", "known")}
    assert f1["inferred"] > f1["none"] + 0.05
    assert f1["known"] >= f1["inferred"] - 0.01


def test_labels_are_expressed_mostly_in_their_own_modality():
    world = dyadic.dyadic_world()
    test = dyadic.to_split(dyadic.sample(world, 600, np.random.default_rng(2)), "test")
    y = test.labels.numpy().astype(int)

    def f1(modality: str, label: str) -> float:
        """F1 of `label` for the oracle that sees only `modality`."""
        j = dyadic.EMOTIONS.index(label)
        return float(f1_score(y[:, j], dyadic_posterior(world, test, [modality])[:, j] > 0.5))

    assert f1("audio", "anger") > f1("text", "anger") + 0.1
    assert f1("text", "sad") > f1("visual", "sad") + 0.1
    assert f1("visual", "surprise") > f1("audio", "surprise") + 0.1


# ------------------------------------------------------------------------------------ readers and files


def test_round_trip_through_the_npz_format(tmp_path, tiny_party, tiny_dyadic):
    for bundle in (tiny_party, tiny_dyadic):
        root = tmp_path / bundle.spec.name
        write_npz_dir(bundle, root)
        again = read_npz_dir(root)
        assert_same_bundle(bundle, again)
        assert_same_bundle(bundle, load_dataset(bundle.spec.name, root))


def test_generated_data_is_cached_but_each_load_gets_its_own_objects():
    options = SynthPartyOptions(size="tiny")
    first = load_dataset("synth-party", options=options)
    first.splits["train"].features["text"] = torch.zeros(1)
    second = load_dataset("synth-party", options=options)
    assert second.splits["train"].features["text"].dim() == 3
    assert second.splits["test"].labels is first.splits["test"].labels  # the tensors are shared, not redrawn


def test_npz_dataset_reads_a_users_directory(tmp_path):
    rng = torch.Generator().manual_seed(0)
    splits = {}
    for name, n in (("train", 6), ("valid", 3), ("test", 4)):
        mask = torch.arange(5)[None, :] < torch.randint(1, 6, (n,), generator=rng)[:, None]
        features = {"text": torch.randn(n, 5, 3, generator=rng) * mask[..., None], "audio": torch.randn(n, 5, 2, generator=rng) * mask[..., None]}
        labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).repeat(n, 1)[:n]
        splits[name] = SplitData(features, {"text": mask, "audio": mask.clone()}, labels, [f"{name}{i}" for i in range(n)], torch.arange(n))
    mine = DatasetBundle(spec_from_splits("my-corpus", ("calm", "excited"), splits, ("text", "audio")), splits, "test")
    write_npz_dir(mine, tmp_path / "mine")
    loaded = load_dataset("npz", tmp_path / "mine")
    assert loaded.spec.name == "my-corpus" and loaded.spec.label_names == ("calm", "excited")
    assert loaded.spec.modality_names == ("text", "audio") and loaded.reference == {}
    assert torch.equal(loaded.splits["valid"].features["audio"], splits["valid"].features["audio"])
    with pytest.raises(DataError, match="dataset 'npz' needs --root"):
        load_dataset("npz")


def test_synthetic_reader_refuses_another_presets_directory(tmp_path, tiny_dyadic):
    write_npz_dir(tiny_dyadic, tmp_path / "d")
    with pytest.raises(DataError, match="field 'name' is 'synth-dyadic', expected 'synth-party'"):
        load_dataset("synth-party", tmp_path / "d")


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("preset", ["synth-party", "synth-dyadic"])
def test_cli_synth_then_check(preset, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "synth", "--preset", preset, "--size", "tiny", "--seed", "3", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"meta.json", "train.npz", "valid.npz", "test.npz"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["name"] == preset and set(meta["reference"]) >= {"chance", "ceiling"}
    capsys.readouterr()
    assert main(["data", "check", "--dataset", preset, "--root", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ceiling: acc" in printed and "chance: acc" in printed and printed.rstrip().endswith("sound")
    assert_same_bundle(generate(preset, seed=3, size="tiny"), read_npz_dir(out))
    assert main(["data", "check", "--dataset", "npz", "--root", str(out)]) == 0


def test_cli_refuses_to_overwrite_a_non_empty_out(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["data", "synth", "--preset", "synth-dyadic", "--size", "tiny", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_cli_unknown_preset_is_one_line_error(tmp_path, capsys):
    assert main(["data", "synth", "--preset", "synth-dyadc", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'synth-dyadic'" in err
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------- round 5


@pytest.mark.parametrize("preset", ["synth-party", "synth-dyadic"])
def test_splits_are_independent_draws_not_copies_of_each_other(preset):
    """Each split has its own random stream: a split that replays another's stream would repeat its leading clips
    (test data leaking from training)."""
    d = draw(preset, size="tiny")
    first = {name: (part.emotions[:6], part.grid.num_persons[:6] if preset == "synth-party" else part.lengths[:6]) for name, part in d.parts.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not np.array_equal(first[a][0], first[b][0]), (a, b)
        assert not np.array_equal(first[a][1], first[b][1]), (a, b)


@pytest.mark.parametrize(("preset", "clips"), [("synth-party", (12, 6, 8)), ("synth-dyadic", (40, 16, 24))])
def test_tiny_sizes_are_the_documented_clip_counts(preset, clips):
    bundle = generate(preset, size="tiny")
    assert tuple(bundle.splits[name].num_clips for name in ("train", "valid", "test")) == clips  # docs/synthetic.md
    assert bundle.source == f"generated in memory: {preset} size=tiny seed={PRESETS[preset].default_seed}"


def test_a_negative_seed_is_a_clear_error():
    with pytest.raises(ConfigError, match="synthetic seed must be >= 0, got -1"):
        generate("synth-dyadic", seed=-1, size="tiny")


def test_chance_reference_uses_the_training_label_rates(tiny_party, tiny_dyadic):
    for bundle in (tiny_party, tiny_dyadic):
        train, test = bundle.splits["train"].labels.numpy(), bundle.splits["test"].labels.numpy().astype(int)
        expected = chance_scores(train.astype(int), test, bundle.spec.label_names)
        assert bundle.reference["chance"] == expected
        assert expected != chance_scores(test, test, bundle.spec.label_names)  # the test rates would be a leak


def test_coupling_matrix_is_symmetric_with_a_zero_diagonal():
    j = coupling_matrix(("a", "b", "c"), {("a", "b"): 1.5, ("c", "a"): -2.0})
    assert np.array_equal(j, [[0, 1.5, -2.0], [1.5, 0, 0], [-2.0, 0, 0]])
    with pytest.raises(ValueError, match="coupling of 'b' with itself"):
        coupling_matrix(("a", "b"), {("b", "b"): 1.0})


def test_label_model_draws_follow_the_boltzmann_probabilities():
    """p(e) ∝ exp(b·e + Σ_{i<j} J_ij e_i e_j) over the non-empty e: the empirical frequencies of 40,000 draws."""
    names = ("a", "b", "c")
    model = LabelModel(names, coupling_matrix(names, {("a", "b"): 1.2, ("b", "c"): -1.5}))
    bias = np.array([-0.5, 0.3, -1.0])
    configs = model.configs
    energy = configs @ bias + 1.2 * configs[:, 0] * configs[:, 1] - 1.5 * configs[:, 1] * configs[:, 2]
    exact = np.exp(energy) / np.exp(energy).sum()
    draws = model.sample(np.broadcast_to(bias, (40_000, 3)), np.random.default_rng(0))
    assert draws.any(axis=1).all()  # never the empty configuration
    codes = (draws * (1 << np.arange(3))).sum(axis=1)  # config row r has binary code r + 1
    freq = np.bincount(codes - 1, minlength=len(configs)) / len(draws)
    np.testing.assert_allclose(freq, exact, atol=0.01)
    np.testing.assert_allclose(model.marginals(model.logits(bias)), exact @ configs, atol=1e-12)


def test_emission_patterns_are_unit_norm_and_offsets_keep_features_off_zero():
    for world in (party.party_world(), dyadic.dyadic_world()):
        for em in world.emissions.values():
            np.testing.assert_allclose(np.linalg.norm(em.patterns, axis=1), 1.0, atol=1e-12)
            assert np.linalg.norm(em.offset) > 0.5


def test_speakers_lose_audio_at_the_documented_rate_and_characters_are_distinct(latent_draw):
    grid = latent_draw.grid
    speaker = grid.is_speaker()
    lost = (speaker & ~grid.present["audio"]).sum() / speaker.sum()
    assert abs(lost - party.SPEAKER_AUDIO_LOSS) < 0.03, lost
    for k in range(len(grid.valid)):
        chars = latent_draw.character[k][latent_draw.character[k] >= 0]
        assert len(chars) == grid.num_persons[k] and len(set(chars.tolist())) == len(chars)  # 2-4 of the 8 characters


def test_dyadic_lengths_cover_min_to_max():
    lengths = dyadic.sample(dyadic.dyadic_world(), 600, np.random.default_rng(0)).lengths
    assert set(lengths.tolist()) == set(range(dyadic.MIN_LEN, dyadic.MAX_LEN + 1))


def test_npz_spec_max_len_is_the_longest_of_all_splits(tmp_path):
    """Models size position tables from `max_len`: a longer test split must not be cut to the training length."""
    splits = {}
    for name, length in (("train", 3), ("valid", 4), ("test", 6)):
        mask = torch.ones(2, length, dtype=torch.bool)
        splits[name] = SplitData({"text": torch.ones(2, length, 2)}, {"text": mask}, torch.eye(2), [f"{name}0", f"{name}1"], torch.arange(2))
    write_npz_dir(DatasetBundle(spec_from_splits("mine", ("x", "y"), splits), splits, "test"), tmp_path / "d")
    assert load_dataset("npz", tmp_path / "d").spec.modality("text").max_len == 6


@pytest.mark.parametrize("fixture", ["tiny_party", "tiny_dyadic"])
def test_a_batch_keeps_every_real_token_and_trims_only_padding(fixture, request):
    split = request.getfixturevalue(fixture).splits["train"]
    index = torch.arange(len(split))
    batch = split.batch(index)
    rows = split.clip_index[index]
    for m, mask in split.masks.items():
        length = batch.masks[m].shape[1]
        assert torch.equal(batch.masks[m], mask[rows, :length]) and not mask[rows, length:].any()
        assert torch.equal(batch.features[m], split.features[m][rows, :length])
    if split.person is not None:
        t = batch.party.person.shape[1]
        assert (split.person[rows, t:] < 0).all() and (batch.party.person[:, -1] >= 0).any()  # last column is used
        assert torch.equal(batch.party.target, split.target[index, :t]) and batch.personality.shape[1] == t
    else:
        assert batch.masks["text"][:, -1].any()  # the longest sample fills the last column
