"""The run grid: which runs a benchmark needs, where each one lives, what state it is in, and running one.

Layout: every run is an ordinary run directory (engine/rundir.py) at

    DIR/runs/<dataset>/<model>/seed<N>/                  the plain model
    DIR/runs/<dataset>/<model>__<row slug>/seed<N>/      an ablation row (ablations.py)

Before anything trains, every run's config is resolved (unknown keys fail here) and its directory inspected:

    new       nothing there yet                                  -> train
    complete  metrics.json and best.pt present, same config      -> skip
    resume    last.pt present but no metrics.json (interrupted)  -> continue with the engine's --resume
    restart   only config.yaml / train.log (stopped before the first checkpoint) -> those two files are
              removed and the run starts over
    stale     trained with a different config (e.g. other --epochs) -> not touched; reported as a failure
    blocked   other files but no checkpoint                      -> not touched; reported as a failure
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmer import config as cfglib
from mmer.benchmark.ablations import AblationTable
from mmer.config import Config
from mmer.engine import rundir, trainer
from mmer.errors import ConfigError
from mmer.metrics import selection_mode
from mmer.registry import DATASETS

RUNS = "runs"
STATUSES = ("new", "complete", "resume", "restart", "stale", "blocked")


@dataclass(frozen=True)
class RunSpec:
    model: str
    dataset: str
    seed: int
    variant: str = ""  # ablation row slug; "" = the plain model
    overrides: tuple[str, ...] = ()  # the grid's --set overrides, then the ablation row's
    origin: str = field(default="", compare=False)  # where the overrides came from, for error messages

    @property
    def entry(self) -> str:
        """Name of this model variant in tables and --compare: 'model' or 'model__variant'."""
        return f"{self.model}__{self.variant}" if self.variant else self.model

    def run_dir(self, out: Path) -> Path:
        return out / RUNS / self.dataset / self.entry / f"seed{self.seed}"

    def describe(self) -> str:
        return f"{self.entry} on {self.dataset}, seed {self.seed}"


@dataclass
class PlannedRun:
    spec: RunSpec
    run_dir: Path
    cfg: Config
    status: str  # one of STATUSES
    problem: str = ""  # why a stale/blocked run cannot proceed


def build_specs(
    models: Iterable[str],
    datasets: Iterable[str],
    seeds: Iterable[int],
    overrides: Iterable[str] = (),
    ablations: Iterable[AblationTable] = (),
) -> list[RunSpec]:
    """Every run of the grid, ordered dataset -> seed -> model -> ablation row (so an interrupted benchmark
    has whole seeds done first), without duplicates. An ablation row without overrides is the plain model."""
    models, overrides, ablations = list(models), tuple(overrides), list(ablations)
    variants: dict[str, list[tuple[str, tuple[str, ...], str]]] = {m: [("", (), "--set")] for m in models}
    seen: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}
    for table in ablations:
        targets = [table.model] if table.model else models
        if table.model and table.model not in models:
            raise ConfigError(f"ablation file {table.path} is for model '{table.model}', which is not in --models ({', '.join(models)})")
        for model, row in itertools.product(targets, table.rows):
            if not row.overrides:
                continue
            origin = f"ablation file {table.path}, row {row.name!r}"
            previous = seen.get((model, row.slug))
            if previous is not None and previous[0] != row.overrides:
                raise ConfigError(f"{origin}: directory name '{row.slug}' is also used by {previous[1]} with other overrides; rename one row")
            if previous is None:
                seen[(model, row.slug)] = (row.overrides, origin)
                variants[model].append((row.slug, row.overrides, origin))
    specs = []
    for dataset, seed, model in itertools.product(datasets, seeds, models):
        for slug, extra, origin in variants[model]:
            specs.append(RunSpec(model, dataset, seed, slug, overrides + extra, origin))
    return specs


def resolve_config(spec: RunSpec, epochs: int | None = None, root: str | None = None) -> Config:
    flags = {"train.seed": spec.seed, "train.epochs": epochs, "data.root": root}
    try:
        return cfglib.resolve(spec.model, spec.dataset, None, list(spec.overrides), flags)
    except ConfigError as exc:
        where = f"{spec.origin} ({spec.model} on {spec.dataset})" if spec.variant else f"{spec.model} on {spec.dataset}"
        raise ConfigError(f"{where}: {exc}") from None


def plan(specs: Iterable[RunSpec], out: Path, epochs: int | None = None, roots: dict[str, str] | None = None) -> list[PlannedRun]:
    """Resolve every config (raising on the first bad one) and inspect every run directory."""
    roots = roots or {}
    planned = []
    for spec in specs:
        cfg = resolve_config(spec, epochs, roots.get(spec.dataset))
        if cfg.data.root is None and DATASETS.get(spec.dataset).needs_root:
            raise ConfigError(f"dataset '{spec.dataset}' reads files: give its data folder with --root {spec.dataset}=DIR")
        run_dir = spec.run_dir(out)
        status, problem = inspect(run_dir, cfg)
        planned.append(PlannedRun(spec, run_dir, cfg, status, problem))
    return planned


def inspect(run_dir: Path, cfg: Config) -> tuple[str, str]:
    """(status, problem) of a run directory that should hold a run of `cfg`."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new", ""
    saved = run_dir / rundir.CONFIG
    if saved.is_file():
        defaults = cfglib.default_dict(cfg.model_name, cfg.data.name)
        diff = config_difference(
            _effective(cfglib.read_yaml(saved, "run config")),
            _effective(yaml.safe_load(cfg.to_yaml())),
            defaults,
            ignore=cfglib.resource_only_keys(cfg),
        )
        if diff:
            return "stale", (
                f"{run_dir} was trained with a different config ({diff}); "
                "delete that directory to retrain it, or benchmark into another --out"
            )
    if rundir.is_complete(run_dir):
        return "complete", ""
    if (run_dir / rundir.LAST).is_file():
        return "resume", ""
    names = {p.name for p in run_dir.iterdir()}  # hidden files too: the engine refuses a folder that holds any
    if names <= {rundir.CONFIG, rundir.LOG}:
        return "restart", ""
    return "blocked", f"{run_dir} holds {', '.join(sorted(names))} but no {rundir.LAST}; move it away to retrain"


def _effective(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with a `train.select_mode` that agrees with its metric written as `auto`, so that a run saved before
    `auto` existed (`max`, for micro_f1) is the same run as one resolved today."""
    train = config.get("train")
    if isinstance(train, dict) and train.get("select_mode") == selection_mode(str(train.get("select_metric", "micro_f1"))):
        train["select_mode"] = "auto"
    return config


def config_difference(
    saved: dict[str, Any], wanted: dict[str, Any], defaults: dict[str, Any] | None = None, limit: int = 3, ignore: set[str] | None = None
) -> str:
    """'train.epochs 3 -> 5, ...' for the keys whose values differ ('' when equal).

    A key the saved config lacks is no difference when `wanted` leaves it at its code default (`defaults`, a
    config dict): it is an option added to the code after the run, and new options default to the old behaviour.
    Keys in `ignore` (options that change only speed or memory: `config.resource_only_keys`) are never a difference.
    """
    a, b = _flatten(saved), _flatten(wanted)
    known = _flatten(defaults or {})
    ignore = ignore or set()
    keys = [
        k for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and k not in ignore and not (k not in a and k in known and b.get(k) == known[k])
    ]
    shown = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def execute(run: PlannedRun) -> dict[str, Any]:
    """Train (or finish) one planned run in this process; returns the engine's {valid, test} metrics."""
    reset_peak_memory()
    if run.status == "resume":
        return trainer.fit(None, run.run_dir, resume=True, quiet=True)
    if run.status == "restart":
        for name in (rundir.CONFIG, rundir.LOG):
            (run.run_dir / name).unlink(missing_ok=True)
    if run.status not in ("new", "restart"):
        raise ValueError(f"cannot execute a run in state '{run.status}'")
    return trainer.fit(run.cfg, run.run_dir, quiet=True)


def reset_peak_memory() -> bool:
    """Reset the process's peak-RSS high-water mark (Linux), so each in-process run reports its own peak.

    The engine records `peak_rss_mb` from getrusage, which is the process maximum; without this reset every
    run of a grid would inherit the largest earlier run's peak. Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
