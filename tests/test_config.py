import re

import pytest

from mmer import config as cfglib
from mmer.cli import main
from mmer.errors import ConfigError
from tests.engine import toy_data  # noqa: F401  registers engine-toy


def test_defaults_and_overrides_resolve_with_types():
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["train.lr=5e-5", "model.d_model=32", "train.precision=32", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 5e-5 and isinstance(cfg.train.lr, float)  # YAML reads '5e-5' as a string
    assert cfg.model.d_model == 32 and cfg.train.precision == "32" and cfg.train.betas == (0.8, 0.9)


def test_unknown_key_names_it_suggests_and_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        cfglib.resolve("baseline", "engine-toy", overrides=["model.d_modl=3"])
    msg = str(err.value)
    assert "'model.d_modl'" in msg and "did you mean 'd_model'" in msg and "num_layers" in msg


def test_wrong_type_and_bad_choice_are_errors():
    with pytest.raises(ConfigError, match="'train.epochs' must be an integer"):
        cfglib.resolve("baseline", "engine-toy", overrides=["train.epochs=two"])
    with pytest.raises(ConfigError, match="'train.optimizer' must be one of"):
        cfglib.resolve("baseline", "engine-toy", overrides=["train.optimizer=sgd"])
    with pytest.raises(ConfigError, match="select_metric"):
        cfglib.resolve("baseline", "engine-toy", overrides=["train.select_metric=f1"])


def test_config_file_layer_and_saved_config_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nmodel:\n  dropout: 0.2\n")
    cfg = cfglib.resolve("baseline", "engine-toy", str(path), ["train.epochs=9"])
    assert cfg.train.epochs == 9 and cfg.model.dropout == 0.2
    # later layers win: the file over the preset, --set over the file, the flags (--epochs, --seed) over --set
    cfg = cfglib.resolve("baseline", "engine-toy", str(path), ["train.epochs=9", "train.seed=3"], {"train.epochs": 5, "train.seed": None})
    assert cfg.train.epochs == 5 and cfg.train.seed == 3 and cfg.model.dropout == 0.2
    assert cfglib.build(cfg.to_dict()) == cfg
    path.write_text("trian:\n  epochs: 7\n")
    with pytest.raises(ConfigError, match=r"config file .*unknown key 'trian'.*did you mean 'train'"):
        cfglib.resolve("baseline", "engine-toy", str(path))


def test_config_show_prints_yaml(capsys):
    assert main(["config", "show", "--model", "baseline", "--dataset", "engine-toy", "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "model_name: baseline" in out


def test_list_and_unknown_dataset(capsys):
    assert main(["list", "models"]) == 0
    assert "baseline" in capsys.readouterr().out
    assert main(["config", "show", "--model", "baseline", "--dataset", "synth-partyy"]) == 2
    assert "unknown dataset 'synth-partyy'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.grad_clip=-1", r"'train.grad_clip' must be > 0 or null"),  # a negative clip would reverse the step
        ("train.lr=nan", r"'train.lr' must be a finite number > 0, got nan"),
        ("train.lr=.inf", r"'train.lr' must be a finite number > 0"),
        ("train.eps=0", r"'train.eps' must be a finite number > 0"),
        ("train.weight_decay=-0.1", r"'train.weight_decay' must be a finite number >= 0"),
        ("train.betas=[2, 0.9]", r"'train.betas' must be two numbers in \[0, 1\)"),
        ("train.patience=-1", r"'train.patience' must be >= 0"),
        ("train.threads=-1", r"'train.threads' must be >= 0"),
        ("train.seed=-1", r"'train.seed' must be >= 0"),
        ("train.seed=4294967296", r"'train.seed' must be < 2\*\*32"),
        ("train.warmup=5", r"'train.warmup' is a fraction of all steps .* must be <= 1"),
        ("train.epochs=0", r"'train.epochs' must be >= 1, got 0"),
        ("data.batch_size=0", r"'data.batch_size' must be >= 1, got 0"),
        ("data.eval_batch_size=0", r"'data.eval_batch_size' must be >= 1, got 0"),
        ("train.devices=0", r"'train.devices' must be >= 1, got 0"),
        ("train.num_nodes=0", r"'train.num_nodes' must be >= 1, got 0"),
        ("train.micro_batch=-1", r"'train.micro_batch' must be >= 0, got -1"),
        ("train.warmup_steps=-1", r"'train.warmup_steps' must be >= 0, got -1"),
        ("train.warmup_start_lr=-1e-5", r"'train.warmup_start_lr' must be a finite number >= 0"),
        ("model.threshold=1.5", r"'model.threshold' must be in \[0, 1\], got 1.5"),
        ("model.threshold=-0.1", r"'model.threshold' must be in \[0, 1\], got -0.1"),
        ("train.epochs=true", r"'train.epochs' must be an integer, got True"),  # YAML true is not 1
        ("data.batch_size=false", r"'data.batch_size' must be an integer, got False"),
        ("train.lr=true", r"'train.lr' must be a number, got True"),
        ("data.drop_last=1", r"'data.drop_last' must be true or false, got 1"),
        ("train.betas=[0.9]", r"'train.betas' must be a list of 2 items"),
        ("train.grad_clip=abc", r"'train.grad_clip' must be a number or null, got 'abc'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        cfglib.resolve("baseline", "engine-toy", overrides=[override])


def test_in_range_edge_values_are_accepted():
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["train.grad_clip=null", "train.weight_decay=0", "train.seed=0", "train.betas=[0, 0.999]"])
    assert cfg.train.grad_clip is None and cfg.train.seed == 0
    epochs = cfglib.resolve("baseline", "engine-toy", overrides=["train.schedule=epoch_warmup_cosine", "train.warmup=5"])
    assert epochs.train.warmup == 5  # counted in epochs by this schedule
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["model.threshold=1", "model.threshold=0.0", "train.epochs=1", "data.batch_size=1", "train.micro_batch=0"])
    assert cfg.model.threshold == 0.0 and cfg.train.epochs == 1 and cfg.data.batch_size == 1
    assert cfglib.resolve("baseline", "engine-toy", overrides=["model.threshold=1"]).model.threshold == 1.0


def test_a_data_section_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match=r"section 'data' must be a mapping, got 3"):
        cfglib.resolve("baseline", "engine-toy", overrides=["data=3"])


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [("ramer", "common_dropout", "1.5"), ("tailor", "attention_dropout", "1.0"), ("baseline", "dropout", "-0.1"), ("amp", "dropout", "1.0")],
)
def test_a_dropout_outside_0_1_is_refused_naming_the_key(model, key, value):
    with pytest.raises(ConfigError, match=rf"'model.{key}' is a dropout probability and must be in \[0, 1\), got {value}"):
        cfglib.resolve(model, "synth-dyadic", overrides=[f"model.{key}={value}"])
    cfglib.resolve(model, "synth-dyadic", overrides=[f"model.{key}=0.0"])  # 0 is allowed


def test_baseline_and_classic_sizes_are_checked_when_the_model_is_built(tmp_path, capsys):
    for model, override, message in (
        ("baseline", "model.num_heads=3", "model.d_model (64) must be divisible by model.num_heads (3)"),
        ("baseline", "model.num_layers=0", "model.num_layers must be >= 1, got 0"),
        ("br", "model.C=-1", "model.C must be > 0"),
    ):
        out = tmp_path / f"{model}-{override}"
        args = ["train", "--model", model, "--dataset", "engine-toy", "--quiet", "--set", override, "--out", str(out)]
        assert main(args) == 2
        assert message in capsys.readouterr().err


def test_classic_models_refuse_several_processes_before_anything_starts():
    with pytest.raises(ConfigError, match=r"model 'cc' is fitted by scikit-learn in one process"):
        cfglib.resolve("cc", "engine-toy", overrides=["train.devices=2"])


def test_a_wrongly_typed_value_names_the_layer_it_came_from(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set train.epochs=abc: key 'train.epochs' must be an integer"):
        cfglib.resolve("baseline", "engine-toy", overrides=["train.epochs=abc"])
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: abc\n")
    with pytest.raises(ConfigError, match=rf"^config file {path}: key 'train.epochs' must be an integer"):
        cfglib.resolve("baseline", "engine-toy", str(path))
    # cross-key rules apply to the final config, so the order of the overrides does not matter
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["train.warmup=5", "train.schedule=epoch_warmup_cosine"])
    assert cfg.train.warmup == 5


# ------------------------------------------------------------------------------ layering and validation (round 5)


def test_a_config_file_changes_only_the_keys_it_names_and_beats_the_preset(tmp_path):
    """baseline/synth-dyadic sets data.batch_size 32 and train.lr 1e-3 (defaults 64 and 5e-5)."""
    preset = cfglib.resolve("baseline", "synth-dyadic")
    assert preset.data.batch_size == 32 and preset.train.lr == 1e-3
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\ndata:\n  eval_batch_size: 8\n  options:\n    size: tiny\nmodel:\n  dropout: 0.3\n")
    cfg = cfglib.resolve("baseline", "synth-dyadic", str(path))
    assert (cfg.train.epochs, cfg.data.eval_batch_size, cfg.data.options.size, cfg.model.dropout) == (3, 8, "tiny", 0.3)
    assert cfg.train.lr == 1e-3 and cfg.data.batch_size == 32  # the preset's other keys of those sections stay
    path.write_text("train:\n  lr: 0.01\ndata:\n  batch_size: 8\n")
    cfg = cfglib.resolve("baseline", "synth-dyadic", str(path))
    assert cfg.train.lr == 0.01 and cfg.data.batch_size == 8  # the file wins over the preset


def test_a_preset_that_extends_another_overrides_its_parent():
    """baseline/music-emotions extends baseline/synth-dyadic and sets data.batch_size 16 (the parent: 32)."""
    cfg = cfglib.resolve("baseline", "music-emotions")
    assert cfg.data.batch_size == 16 and cfg.train.lr == 1e-3  # own value, then the parent's for the rest


def test_extends_cycles_and_missing_parents_are_named(tmp_path, monkeypatch):
    presets = tmp_path / "baseline"
    presets.mkdir()
    (presets / "synth-party.yaml").write_text("extends: synth-dyadic\n")
    (presets / "synth-dyadic.yaml").write_text("extends: synth-party\n")
    (presets / "engine-toy.yaml").write_text("extends: nowhere\n")

    def fake_preset_path(model, dataset):
        path = tmp_path / model / f"{dataset}.yaml"
        return path if path.is_file() else None

    monkeypatch.setattr(cfglib, "preset_path", fake_preset_path)
    with pytest.raises(ConfigError, match=r"preset baseline/synth-party: 'extends' forms a cycle \(synth-party -> synth-dyadic -> synth-party\)"):
        cfglib.resolve("baseline", "synth-party")
    with pytest.raises(ConfigError, match=r"preset baseline/engine-toy extends 'nowhere', which has no baseline preset"):
        cfglib.resolve("baseline", "engine-toy")


def test_a_config_file_for_another_dataset_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  name: synth-party\n")
    with pytest.raises(ConfigError, match=rf"config file {path}: data.name is 'synth-party' but --dataset is 'engine-toy'"):
        cfglib.resolve("baseline", "engine-toy", str(path))
    path.write_text("model_name: br\ndata:\n  name: engine-toy\ntrain:\n  epochs: 4\n")  # a saved run config of the same data
    cfg = cfglib.resolve("baseline", "engine-toy", str(path))
    assert cfg.model_name == "baseline" and cfg.train.epochs == 4  # --model wins over the file's model_name


def test_a_missing_or_unreadable_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=rf"^config file {tmp_path / 'nope.yaml'} does not exist$"):
        cfglib.resolve("baseline", "engine-toy", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=rf"^config file {tmp_path} is a directory, not a YAML file$"):
        cfglib.resolve("baseline", "engine-toy", str(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1,\n")
    with pytest.raises(ConfigError, match=rf"^config file {bad} is not valid YAML"):
        cfglib.resolve("baseline", "engine-toy", str(bad))
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=rf"^config file {bad} must contain a mapping at the top level$"):
        cfglib.resolve("baseline", "engine-toy", str(bad))


def test_set_values_keep_everything_after_the_first_equals_sign():
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["data.root=/data/a=b", "train.select_metric=macro_f1"])
    assert cfg.data.root == "/data/a=b" and cfg.train.select_metric == "macro_f1"
    for bad, message in (("train.epochs", "--set expects key=value"), ("=3", "--set has an empty key"), ("train..epochs=3", "--set has an empty key")):
        with pytest.raises(ConfigError, match=message):
            cfglib.resolve("baseline", "engine-toy", overrides=[bad])


def test_dataset_options_take_only_data_options_and_ignore_model_presets():
    opts = cfglib.dataset_options("synth-dyadic", ["data.options.size=tiny"])
    assert opts.size == "tiny"
    for bad in ("data.batch_size=3", "data.name=synth-party", "train.epochs=2"):
        with pytest.raises(ConfigError, match=rf"--set {bad}: `mmer data check` takes dataset options only"):
            cfglib.dataset_options("synth-dyadic", [bad])
    with pytest.raises(ConfigError, match=r"unknown key 'data.options.sise'.*did you mean 'size'"):
        cfglib.dataset_options("synth-dyadic", ["data.options.sise=tiny"])


@pytest.mark.parametrize(
    ("overrides", "flags", "message"),
    [
        (["train.lr=0"], {}, r"^--set train.lr=0: key 'train.lr' must be a finite number > 0"),
        ([], {"train.epochs": 0}, r"^--epochs: key 'train.epochs' must be >= 1, got 0"),
        (["train.epochs=3"], {"train.epochs": 0}, r"^--epochs: key 'train.epochs'"),  # the layer that set it last
        (["train.select_metric=hamming_loss", "train.select_mode=max"], {}, r"^--set train.select_mode=max: key 'train.select_mode' is 'max', which would keep the epoch with the worst hamming_loss; use 'auto' or 'min'"),
        (["train.select_mode=min"], {}, r"key 'train.select_mode' is 'min', which would keep the epoch with the worst micro_f1"),
    ],
)
def test_range_and_cross_key_errors_name_the_layer_that_set_the_key(overrides, flags, message):
    with pytest.raises(ConfigError, match=message):
        cfglib.resolve("baseline", "engine-toy", overrides=overrides, flags=flags)


def test_a_config_file_value_out_of_range_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  patience: -2\n")
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(path))}: key 'train.patience' must be >= 0, got -2"):
        cfglib.resolve("baseline", "engine-toy", config_file=str(path))


def test_select_mode_that_agrees_with_the_metric_is_accepted():
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=["train.select_metric=hamming_loss", "train.select_mode=min"])
    assert cfg.train.select_mode == "min"
    assert cfglib.resolve("baseline", "engine-toy").train.select_mode == "auto"


def test_an_option_for_a_dataset_without_options_says_so():
    with pytest.raises(ConfigError, match=r"unknown key 'data.options.size': nothing can be set under 'data.options' \(this dataset has no options\)"):
        cfglib.resolve("baseline", "npz", overrides=["data.options.size=tiny"])
