"""Typed configuration: dataclasses, YAML presets, config files and `--set a.b=c` overrides.

Resolution order (later wins): dataclass defaults -> preset `configs/<model>/<dataset>.yaml` (if it exists) ->
`--config FILE` -> `--set key=value` -> command-line flags (--epochs, --seed, --device). Every layer is checked
against the keys that exist; an unknown key or a value of the wrong type is a ConfigError naming the key, where it
came from and what is valid. The resolved config is saved with every run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from mmer.errors import ConfigError, did_you_mean
from mmer.registry import DATASETS, MODELS

PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed", "16-mixed": "16-mixed"}


@dataclass
class ModelConfig:
    """Fields every model has; each model subclasses this with its own hyper-parameters."""

    threshold: float = 0.5  # prediction rule: probability > threshold


@dataclass
class DataConfig:
    name: str = "synth-party"
    root: str | None = None  # folder with the dataset's files; None = built-in (synthetic data only)
    batch_size: int = 64
    eval_batch_size: int = 256
    drop_last: bool = True  # drop the last incomplete training batch (the official codes do)
    options: Any = None  # the dataset's own options dataclass (see `mmer config show`)


# dataclass field metadata of an option that changes only speed or memory, never a computed value (tested for each):
# a run trained with another value of it is still the same run (`resource_only_keys`, the benchmark's stale check)
RESOURCE_ONLY = {"resource_only": True}


@dataclass
class TrainConfig:
    epochs: int = 20
    optimizer: Literal["adamw", "adam", "bertadam"] = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["constant", "warmup_linear", "warmup_cosine", "epoch_warmup_cosine"] = "warmup_linear"
    warmup: float = 0.1  # fraction of all steps (per-step schedules) or number of epochs (epoch_warmup_cosine)
    warmup_steps: int = 0  # per-step schedules: if > 0, warm up over this many updates instead of the fraction `warmup`
    warmup_start_lr: float = 0.0  # epoch_warmup_cosine: lr at epoch 0
    grad_clip: float | None = 1.0  # global L2 norm clip; null = off
    select_metric: str = "micro_f1"  # validation metric that picks best.pt
    select_mode: Literal["auto", "max", "min"] = "auto"  # the metric decides (min for hamming_loss); max/min must agree with it
    patience: int = 0  # epochs without improvement before stopping; 0 = never stop early
    seed: int = 42
    precision: Literal["32", "bf16", "16-mixed"] = "32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int = 1  # processes per node (data parallel when > 1)
    num_nodes: int = 1
    threads: int = 0  # torch intra-op threads per process; 0 = torch default
    micro_batch: int = 0  # > 0: run each batch in chunks of at most this many samples, one optimizer step per batch (engine/context.py)
    release_memory: bool = field(default=False, metadata=RESOURCE_ONLY)  # return freed tensors to the OS (glibc): lower peak RSS, slower steps (engine/memory.py)


@dataclass
class Config:
    model_name: str
    model: Any  # the model's ModelConfig subclass
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model": to_dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def resource_only_keys(cfg: Config) -> set[str]:
    """The dotted keys of `cfg` (e.g. "model.recompute_cross") whose fields carry `RESOURCE_ONLY`."""
    keys: set[str] = set()
    for section in ("model", "data", "train"):
        options = getattr(cfg, section)
        if dataclasses.is_dataclass(options):
            keys |= {f"{section}.{f.name}" for f in dataclasses.fields(options) if f.metadata.get("resource_only")}
    return keys


# ----------------------------------------------------------------------------------------------- building


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(x) for x in obj]
    if isinstance(obj, list):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: dict[str, Any], path: str, source: str = "config") -> Any:
    """Build dataclass `cls` from `data`, checking keys and coercing/validating types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{path}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(_unknown_key(source, _join(path, key), key, names))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], _join(path, f.name), source)
    return cls(**kwargs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown_key(source: str, full: str, key: str, valid: list[str]) -> str:
    if not valid:
        parent = full.rsplit(".", 1)[0]
        why = " (this dataset has no options)" if parent == "data.options" else ""
        return f"{source}: unknown key '{full}': nothing can be set under '{parent}'{why}"
    return f"{source}: unknown key '{full}'{did_you_mean(key, valid)}; valid keys here: {', '.join(sorted(valid))}"


def _coerce(value: Any, tp: Any, path: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: key '{path}' must be {expected}, got {value!r}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path, source)
            except ConfigError:
                continue  # try the next member; if none fits, name them all
        raise bad(" or ".join(_VALUE_NAMES.get(a, _type_name(a)) for a in args))
    if origin is Literal:
        if value in args:
            return value
        if str(value) in [str(a) for a in args]:  # e.g. precision 32 given as an int
            return args[[str(a) for a in args].index(str(value))]
        raise ConfigError(f"{source}: key '{path}' must be one of {', '.join(map(repr, args))}, got {value!r}{did_you_mean(str(value), map(str, args))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads '5e-5' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list ({_type_name(tp)})")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise bad(f"a list of {len(args)} items")
            return tuple(_coerce(v, a, f"{path}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("a mapping")
        vt = args[1] if args else Any
        return {str(k): _coerce(v, vt, f"{path}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, source)
    raise TypeError(f"unsupported config type {tp!r} at {path}")


_VALUE_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false", type(None): "null"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# --------------------------------------------------------------------------------------------- layering


def merge_into(base: dict[str, Any], layer: dict[str, Any], source: str, path: str = "", origin: dict[str, str] | None = None) -> None:
    """Recursively copy `layer` into `base`, refusing keys `base` does not have; `origin` records, per dotted key,
    the source that set it last."""
    if not isinstance(layer, dict):
        raise ConfigError(f"{source}: '{path or 'top level'}' must be a mapping, got {type(layer).__name__}")
    for key, value in layer.items():
        full = _join(path, str(key))
        if key not in base:
            raise ConfigError(_unknown_key(source, full, str(key), list(base)))
        if isinstance(base[key], dict) and isinstance(value, dict):
            merge_into(base[key], value, source, full, origin)
        else:
            base[key] = value
            if origin is not None:
                origin[full] = source


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=c' -> (['a', 'b'], YAML value of 'c')."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set has an empty key in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_path(base: dict[str, Any], keys: list[str], value: Any, source: str, origin: dict[str, str] | None = None) -> None:
    node = base
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            valid = list(node) if isinstance(node, dict) else []
            raise ConfigError(_unknown_key(source, ".".join(keys[: i + 1]), key, valid))
        if i == len(keys) - 1:
            node[key] = value
            if origin is not None:
                origin[".".join(keys)] = source
        else:
            node = node[key]


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must contain a mapping at the top level")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: the problem and where ("mapping values are not allowed here, line 3 column 8")."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    return problem + (f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else "")


def preset_path(model: str, dataset: str) -> Path | None:
    path = Path(str(resources.files("mmer") / "configs" / model / f"{dataset}.yaml"))
    return path if path.is_file() else None


def preset_layers(model: str, dataset: str, seen: tuple[str, ...] = ()) -> list[tuple[dict[str, Any], str]]:
    """The preset of (model, dataset) as merge layers, base first: a preset may say `extends: <other dataset>` to
    start from that dataset's preset of the same model and list only what differs (the real-data presets do)."""
    path = preset_path(model, dataset)
    if path is None:
        if seen:
            raise ConfigError(f"preset {model}/{seen[-1]} extends '{dataset}', which has no {model} preset")
        return []
    if dataset in seen:
        raise ConfigError(f"preset {model}/{dataset}: 'extends' forms a cycle ({' -> '.join((*seen, dataset))})")
    layer = read_yaml(path, "preset")
    parent = layer.pop("extends", None)
    base = preset_layers(model, str(parent), (*seen, dataset)) if parent is not None else []
    return [*base, (layer, f"preset {model}/{dataset}")]


def default_dict(model: str, dataset: str) -> dict[str, Any]:
    model_entry, data_entry = MODELS.get(model), DATASETS.get(dataset)
    model_cfg = model_entry.options() if model_entry.options else ModelConfig()
    data_options = to_dict(data_entry.options()) if data_entry.options else {}
    return {
        "model_name": model,
        "model": to_dict(model_cfg),
        "data": {**to_dict(DataConfig(name=dataset)), "options": data_options},
        "train": to_dict(TrainConfig()),
    }


def resolve(
    model: str,
    dataset: str,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    presets: bool = True,
) -> Config:
    """The fully resolved config for (model, dataset) with every layer applied and validated (`presets=False`:
    without the model's preset, e.g. for the dataset's own default options)."""
    base = default_dict(model, dataset)
    origin: dict[str, str] = {}  # dotted key -> the layer that set it last, named in range and cross-key errors
    for layer, source in preset_layers(model, dataset) if presets else []:
        merge_into(base, layer, source, origin=origin)
    if config_file:
        layer = read_yaml(config_file, "config file")
        for fixed in ("model_name",):
            layer.pop(fixed, None)  # a saved run config can be passed back in
        if "data" in layer and isinstance(layer["data"], dict) and layer["data"].get("name", dataset) != dataset:
            raise ConfigError(f"config file {config_file}: data.name is {layer['data']['name']!r} but --dataset is {dataset!r}")
        merge_into(base, layer, f"config file {config_file}", origin=origin)
        build(base, f"config file {config_file}", check=False)  # a wrongly typed value is named with its layer
    for text in overrides or []:
        keys, value = parse_override(text)
        set_path(base, keys, value, f"--set {text}", origin)
        build(base, f"--set {text}", check=False)
    for dotted, value in (flags or {}).items():
        if value is not None:
            flag = f"--{dotted.split('.')[-1]}"
            set_path(base, dotted.split("."), value, flag, origin)
            build(base, flag, check=False)
    return build(base, "defaults", origin=origin)


def dataset_options(dataset: str, overrides: list[str]) -> Any:
    """The dataset's own default options plus `data.options.KEY=VALUE` overrides, checked as for `mmer train` but
    without any model preset (`mmer data check`)."""
    for text in overrides:
        if not text.startswith("data.options."):
            raise ConfigError(f"--set {text}: `mmer data check` takes dataset options only (data.options.KEY=VALUE)")
    return resolve("baseline", dataset, overrides=overrides, presets=False).data.options  # any model: no preset read


def build(data: dict[str, Any], source: str = "config", check: bool = True, origin: dict[str, str] | None = None) -> Config:
    """Validate a plain dict (e.g. a saved config.yaml) into a Config. `check=False` converts types only: the
    ranges and cross-key rules (`_check`) apply to the final config, whatever order the layers set keys in; their
    errors name the layer that set the key (`origin`, dotted key -> source), else `source`."""
    model = data.get("model_name")
    if not isinstance(model, str):
        raise ConfigError(f"{source}: missing 'model_name'")
    model_entry = MODELS.get(model)
    if not isinstance(data.get("data", {}), dict):
        raise ConfigError(f"{source}: section 'data' must be a mapping, got {data['data']!r}")
    data_section = dict(data.get("data", {}))
    dataset = data_section.get("name", "")
    data_entry = DATASETS.get(dataset)
    options = data_section.pop("options", {}) or {}
    data_cfg = from_dict(DataConfig, data_section, "data", source)
    data_cfg.options = from_dict(data_entry.options, options, "data.options", source) if data_entry.options else None
    if not data_entry.options and options:
        raise ConfigError(f"{source}: dataset '{dataset}' takes no options, got {sorted(options)}")
    model_cls = model_entry.options or ModelConfig
    cfg = Config(
        model_name=model,
        model=from_dict(model_cls, data.get("model", {}), "model", source),
        data=data_cfg,
        train=from_dict(TrainConfig, data.get("train", {}), "train", source),
    )
    if check:
        _check(cfg, lambda key: (origin or {}).get(key, source))
    return cfg


def _check(cfg: Config, source_of: Callable[[str], str]) -> None:
    """Ranges and cross-key rules of the final config; each error names the key and the layer that set it."""
    from mmer.metrics import METRIC_KEYS, selection_mode

    def key_error(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source_of(key)}: key '{key}' {problem}")

    t = cfg.train
    if t.select_metric not in METRIC_KEYS:
        raise key_error("train.select_metric", f"must be one of {', '.join(METRIC_KEYS)}, got {t.select_metric!r}{did_you_mean(t.select_metric, METRIC_KEYS)}")
    direction = selection_mode(t.select_metric)
    if t.select_mode not in ("auto", direction):
        raise key_error("train.select_mode", f"is '{t.select_mode}', which would keep the epoch with the worst {t.select_metric}; use 'auto' or '{direction}'")
    least = (
        ("train.micro_batch", t.micro_batch, 0),
        ("train.epochs", t.epochs, 1),
        ("data.batch_size", cfg.data.batch_size, 1),
        ("data.eval_batch_size", cfg.data.eval_batch_size, 1),
        ("train.devices", t.devices, 1),
        ("train.num_nodes", t.num_nodes, 1),
        ("train.patience", t.patience, 0),
        ("train.threads", t.threads, 0),
        ("train.warmup_steps", t.warmup_steps, 0),
        ("train.seed", t.seed, 0),
    )
    for key, value, low in least:
        if value < low:
            raise key_error(key, f"must be >= {low}, got {value}")
    if t.seed >= 2**32:
        raise key_error("train.seed", f"must be < 2**32 (NumPy's seed range), got {t.seed}")
    non_negative = (  # (key, value, whether 0 is refused too)
        ("train.lr", t.lr, True),
        ("train.eps", t.eps, True),
        ("train.weight_decay", t.weight_decay, False),
        ("train.warmup", t.warmup, False),
        ("train.warmup_start_lr", t.warmup_start_lr, False),
    )
    for key, value, strict in non_negative:
        if not math.isfinite(value) or value < 0 or (strict and value == 0):
            raise key_error(key, f"must be a finite number {'> 0' if strict else '>= 0'}, got {value}")
    if t.grad_clip is not None and not (math.isfinite(t.grad_clip) and t.grad_clip > 0):
        raise key_error("train.grad_clip", f"must be > 0 or null (no clipping), got {t.grad_clip}")
    if not all(0.0 <= b < 1.0 for b in t.betas):
        raise key_error("train.betas", f"must be two numbers in [0, 1), got {list(t.betas)}")
    if t.schedule in ("warmup_linear", "warmup_cosine") and t.warmup > 1.0:
        raise key_error("train.warmup", f"is a fraction of all steps for schedule '{t.schedule}' and must be <= 1, got {t.warmup} (train.warmup_steps counts updates)")
    if t.schedule == "epoch_warmup_cosine" and t.warmup_steps:
        raise key_error(
            "train.warmup_steps",
            f"must be 0 with schedule 'epoch_warmup_cosine' (set by {source_of('train.schedule')}), which counts its warm-up "
            f"in epochs (train.warmup); got {t.warmup_steps}",
        )
    model = MODELS.get(cfg.model_name).obj
    if t.devices * t.num_nodes > 1 and hasattr(model, "fit_classic"):
        key = "train.devices" if t.devices > 1 else "train.num_nodes"
        raise key_error(key, f"must be 1: model '{cfg.model_name}' is fitted by scikit-learn in one process (train.devices x train.num_nodes is {t.devices * t.num_nodes})")
    if t.micro_batch and not getattr(model, "supports_micro_batches", True):
        raise key_error("train.micro_batch", f"must be 0 for model '{cfg.model_name}': its training step reads the gradients between its backward passes, so chunks cannot accumulate")
    for f in dataclasses.fields(cfg.model):
        value = getattr(cfg.model, f.name)
        if "dropout" in f.name and isinstance(value, float) and not 0.0 <= value < 1.0:
            raise key_error(f"model.{f.name}", f"is a dropout probability and must be in [0, 1), got {value}")
    if not 0.0 <= cfg.model.threshold <= 1.0:
        raise key_error("model.threshold", f"must be in [0, 1], got {cfg.model.threshold}")
