"""fit / evaluate / predict: the training loop of mmer.

One loop for every model: per step the model's `training_step(batch, ctx)` runs its forward and as many
backward passes as it needs (`ctx.backward`; in chunks with `train.micro_batch`, engine/context.py); the engine then averages gradients across processes, clips,
steps the optimizer and the schedule. After each epoch the validation split is evaluated in order over every
sample; `best.pt` is written when the selection metric improves, `last.pt` always (with optimizer, schedule and
RNG state, so `--resume` continues the exact same run). Test metrics come from `best.pt`.
Models without gradient training (the scikit-learn baselines) expose `fit_classic` and are fitted in one pass.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from tqdm import tqdm

from mmer import config as cfglib
from mmer.config import Config
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec, DatasetBundle, SplitData
from mmer.data.load import load_dataset
from mmer.data.loader import eval_batches, num_train_batches, train_batches
from mmer.engine import rundir
from mmer.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mmer.engine.context import StepContext, run_training_step
from mmer.engine.fabric import average_gradients, broadcast_parameters, gather_rows, lightning_banners, make_fabric
from mmer.engine.memory import apply_memory_option
from mmer.engine.optim import build_optimizer, build_scheduler
from mmer.errors import DataError, DivergenceError
from mmer.io import write_json, write_text
from mmer.metrics import METRIC_KEYS, binarize, compute_metrics, format_table, is_better, selection_mode
from mmer.models.base import MMERModel
from mmer.registry import MODELS

BatchTransform = Callable[[Batch], Batch]


@dataclass
class SplitPrediction:
    ids: list[str]
    probs: np.ndarray  # [N, C]
    labels: np.ndarray  # [N, C]


def build_model(cfg: Config, spec: DataSpec) -> MMERModel:
    return MODELS.get(cfg.model_name).obj(cfg.model, spec)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------- evaluation


def predict_split(
    fabric: Fabric, model: MMERModel, split: SplitData, batch_size: int, transform: BatchTransform | None = None
) -> SplitPrediction:
    """Probabilities for every sample of `split`, in split order, each sample exactly once (across processes)."""
    was_training = model.training
    model.eval()
    indices, probs = [], []
    with torch.no_grad():
        for batch in eval_batches(split, batch_size, fabric.global_rank, fabric.world_size):
            if transform is not None:
                batch = transform(batch)
            with fabric.autocast():
                p = model.predict_proba(batch.to(fabric.device))
            indices.append(batch.index)
            probs.append(p.float().cpu())
    model.train(was_training)
    index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
    rows = torch.cat(probs) if probs else torch.zeros(0, split.labels.shape[1])
    index, rows = gather_rows(fabric, index, rows, len(split))
    order = torch.argsort(index)
    if not torch.equal(index[order], torch.arange(len(split))):
        raise RuntimeError(f"evaluation covered {len(index)} predictions for {len(split)} samples (not each exactly once)")
    return SplitPrediction(split.ids, rows[order].numpy(), split.labels.numpy())


def split_metrics(pred: SplitPrediction, threshold: float, label_names: tuple[str, ...]) -> dict[str, Any]:
    return compute_metrics(pred.labels, binarize(pred.probs, threshold), label_names)


# ---------------------------------------------------------------------------------------------- training


def fit(cfg: Config | None, run_dir: str | Path, *, resume: bool = False, fast_dev_run: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (with `resume`, cfg is None: the saved config is used).

    Returns {"valid": metrics, "test": metrics} on rank 0; {} on other ranks and for --fast-dev-run.
    """
    run_dir = Path(run_dir)
    if resume:
        cfg = cfglib.build(load_checkpoint(run_dir / rundir.LAST)["config"], f"{run_dir / rundir.LAST}")
    assert cfg is not None, "fit needs a config unless resuming"
    with lightning_banners(shown=not quiet):
        fabric = make_fabric(cfg.train)
        fabric.launch()
    return _Fit(fabric, cfg, run_dir, resume, fast_dev_run, quiet).run()


class _Fit:
    def __init__(self, fabric: Fabric, cfg: Config, run_dir: Path, resume: bool, fast_dev_run: bool, quiet: bool):
        self.fabric, self.cfg, self.run_dir = fabric, cfg, run_dir
        self.resume, self.fast_dev_run, self.quiet = resume, fast_dev_run, quiet
        self.rank0 = fabric.global_rank == 0
        self.show_bars = self.rank0 and not quiet and sys.stderr.isatty()

    def run(self) -> dict[str, Any]:
        fabric = self.fabric
        new_folder = not self.resume and not (self.run_dir.is_dir() and any(self.run_dir.iterdir()))
        if self.rank0:
            if self.fast_dev_run:
                rundir.prepare_fast_dev_run(self.run_dir)
            else:
                rundir.prepare(self.run_dir, self.resume)
        fabric.barrier()
        self.log = rundir.get_logger(self.run_dir, self.quiet, fabric.global_rank)
        self.file_log = rundir.get_logger(self.run_dir, True, fabric.global_rank, "file")  # the command prints results
        finished = False
        try:
            result = self._run()
            finished = True
            return result
        finally:
            rundir.close_logger(self.log)
            rundir.close_logger(self.file_log)
            if not finished and self.rank0 and new_folder and not self.fast_dev_run:
                rundir.discard_unstarted(self.run_dir)  # a failed set-up leaves no folder that blocks the retry

    def _run(self) -> dict[str, Any]:
        fabric, cfg = self.fabric, self.cfg
        fabric.seed_everything(cfg.train.seed, verbose=False)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        apply_memory_option(cfg.train)
        start = time.time()
        self.bundle: DatasetBundle = load_dataset(cfg.data.name, cfg.data.root, cfg.data.options)
        self.spec = self.bundle.spec
        model = build_model(cfg, self.spec).to(fabric.device)
        self.model = model
        self.log.info(
            f"model {cfg.model_name} ({count_parameters(model) / 1e6:.2f}M parameters) on {self.spec.name}: "
            + ", ".join(f"{k} {len(s)}" for k, s in self.bundle.splits.items())
            + f"; device {fabric.device}, {fabric.world_size} process(es), precision {cfg.train.precision}"
        )
        if self.rank0 and not self.fast_dev_run and not self.resume:
            write_text(self.run_dir / rundir.CONFIG, cfg.to_yaml())
        if hasattr(model, "fit_classic"):
            self._fit_classic()
        else:
            self._fit_gradient()
        if self.fast_dev_run:
            self.log.info("fast-dev-run finished: one batch of each split ran; nothing but this log was written")
            return {}
        return self._finish(time.time() - start)

    # -- gradient training

    def _fit_gradient(self) -> None:
        fabric, cfg, model = self.fabric, self.cfg, self.model
        train = self.bundle.splits["train"]
        world = fabric.world_size
        steps_per_epoch = num_train_batches(len(train), cfg.data.batch_size, world, cfg.data.drop_last)
        if steps_per_epoch == 0:
            raise DataError(f"{self.bundle.source}: the train split has fewer samples than processes")
        total_steps = steps_per_epoch * cfg.train.epochs
        optimizer = build_optimizer(model, cfg.train)
        scheduler = build_scheduler(optimizer, cfg.train, total_steps, steps_per_epoch)
        optimizer = fabric.setup_optimizers(optimizer)
        broadcast_parameters(fabric, model)
        state = {"epoch": 0, "global_step": 0, "history": [], "best": None}
        if self.resume:
            ckpt = load_checkpoint(self.run_dir / rundir.LAST)
            model.load_state_dict(ckpt["model_state"])
            optimizer.load_state_dict(ckpt["optimizer_state"])
            scheduler.load_state_dict(ckpt["scheduler_state"])
            set_rng_state(ckpt["rng"])
            state = {k: ckpt[k] for k in state}
            self.log.info(f"resuming {self.run_dir} after epoch {state['epoch']}")
        for epoch in range(state["epoch"], cfg.train.epochs):
            t0 = time.time()
            train_logs = self._train_epoch(optimizer, scheduler, epoch, state, steps_per_epoch, total_steps)
            if self.fast_dev_run:
                self._fast_dev_eval()
                return
            valid = split_metrics(self._predict("valid"), model.threshold, self.spec.label_names)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **train_logs, "train_seconds": round(time.time() - t0, 3)}
            row.update({f"valid_{k}": valid[k] for k in METRIC_KEYS})
            self._select(epoch, valid, row, state)
            state["epoch"] = epoch + 1
            if self.rank0:
                rundir.write_history(self.run_dir, state["history"])
                save_checkpoint(
                    self.run_dir / rundir.LAST,
                    {**self._describe(), **state, "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(), "rng": rng_state()},
                )
            fabric.barrier()
            if self._should_stop(state):
                self.log.info(f"early stop: no improvement of valid {cfg.train.select_metric} for {cfg.train.patience} epochs")
                break

    def _train_epoch(self, optimizer: Any, scheduler: Any, epoch: int, state: dict[str, Any], steps: int, total: int) -> dict[str, float]:
        fabric, cfg, model = self.fabric, self.cfg, self.model
        model.train()
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        batches = train_batches(self.bundle.splits["train"], cfg.data.batch_size, cfg.train.seed, epoch, fabric.global_rank, fabric.world_size, cfg.data.drop_last)
        bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not self.show_bars, leave=False)
        for batch in bar:
            batch = batch.to(fabric.device)
            ctx = StepContext(fabric, epoch, state["global_step"], total)
            with fabric.autocast():
                logs = run_training_step(model, batch, ctx, cfg.train.micro_batch)
            if ctx.backward_calls == 0:
                raise RuntimeError(f"{type(model).__name__}.training_step ran no backward pass")
            average_gradients(fabric, model)
            try:  # without clipping (max_norm inf) this only checks that the gradient norm is finite
                fabric.clip_gradients(model, optimizer, max_norm=cfg.train.grad_clip or float("inf"), error_if_nonfinite=True)
            except RuntimeError as exc:
                if "non-finite" not in str(exc):
                    raise
                raise DivergenceError(f"gradient norm is non-finite at epoch {epoch + 1}, step {state['global_step'] + 1}; training stopped") from None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            for key, value in logs.items():
                sums[key] += value * batch.size
            seen += batch.size
            if self.show_bars and "loss" in logs:
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if self.fast_dev_run:
                break
        means = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
        self.log.info(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        return means

    def _select(self, epoch: int, valid: dict[str, Any], row: dict[str, Any], state: dict[str, Any]) -> None:
        t = self.cfg.train
        value = float(valid[t.select_metric])
        best = state["best"]
        improved = is_better(value, None if best is None else best["value"], selection_mode(t.select_metric))
        row["best"] = int(improved)
        state["history"].append(row)
        self.log.info(f"epoch {epoch + 1}: valid {t.select_metric} {value:.4f}" + (" (best so far)" if improved else ""))
        if improved:
            state["best"] = {"metric": t.select_metric, "value": value, "epoch": epoch + 1}
            if self.rank0:
                save_checkpoint(self.run_dir / rundir.BEST, {**self._describe(), "epoch": epoch + 1, "best": state["best"]})

    def _should_stop(self, state: dict[str, Any]) -> bool:
        patience = self.cfg.train.patience
        return bool(patience) and state["best"] is not None and state["epoch"] - state["best"]["epoch"] >= patience

    def _fast_dev_eval(self) -> None:
        for name in ("valid", "test"):
            split = self.bundle.splits[name]
            batch = split.batch(torch.arange(min(len(split), self.cfg.data.eval_batch_size)))
            self.model.eval()
            with torch.no_grad():
                probs = self.model.predict_proba(batch.to(self.fabric.device))
            self.log.info(f"fast-dev-run {name}: one batch of {batch.size}, probabilities {tuple(probs.shape)}")

    # -- classic (scikit-learn) models

    def _fit_classic(self) -> None:
        train = self.bundle.splits["train"]
        if self.fast_dev_run:
            train = train.subset(torch.arange(min(len(train), self.cfg.data.batch_size)))
        t0 = time.time()
        self.model.fit_classic(train, self.cfg.data.eval_batch_size)
        if self.fast_dev_run:
            self._fast_dev_eval()
            return
        valid = split_metrics(self._predict("valid"), self.model.threshold, self.spec.label_names)
        row = {"epoch": 1, "train_seconds": round(time.time() - t0, 3), **{f"valid_{k}": valid[k] for k in METRIC_KEYS}, "best": 1}
        best = {"metric": self.cfg.train.select_metric, "value": float(valid[self.cfg.train.select_metric]), "epoch": 1}
        rundir.write_history(self.run_dir, [row])
        save_checkpoint(self.run_dir / rundir.BEST, {**self._describe(), "epoch": 1, "best": best})
        save_checkpoint(self.run_dir / rundir.LAST, {**self._describe(), "epoch": 1, "global_step": 0, "history": [row], "best": best})

    # -- the end of a run

    def _finish(self, seconds: float) -> dict[str, Any]:
        fabric = self.fabric
        best = load_checkpoint(self.run_dir / rundir.BEST)
        self.model.load_state_dict(best["model_state"])
        preds = {name: self._predict(name) for name in ("valid", "test")}
        metrics = {name: split_metrics(p, self.model.threshold, self.spec.label_names) for name, p in preds.items()}
        if self.rank0:
            rundir.write_metrics(self.run_dir, metrics)
            test = preds["test"]
            write_text(self.run_dir / rundir.PREDICTIONS, rundir.predictions_csv(test.ids, test.probs, test.labels, list(self.spec.label_names), self.model.threshold))
            write_json(
                self.run_dir / rundir.RUN_INFO,
                {
                    "model": self.cfg.model_name,
                    "dataset": self.spec.name,
                    "parameters": count_parameters(self.model),
                    "best_epoch": best["best"]["epoch"],
                    "wall_seconds": round(seconds, 2),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "processes": fabric.world_size,
                    "device": str(fabric.device),
                    "reference": self.bundle.reference,
                },
            )
            self.log.info(f"best epoch {best['best']['epoch']} (valid {best['best']['metric']} {best['best']['value']:.4f}); metrics from best.pt:")
            self.file_log.info(format_table(metrics))
        fabric.barrier()
        return metrics if self.rank0 else {}

    def _predict(self, split: str) -> SplitPrediction:
        return predict_split(self.fabric, self.model, self.bundle.splits[split], self.cfg.data.eval_batch_size)

    def _describe(self) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model_name,
            "config": self.cfg.to_dict(),
            "label_names": list(self.spec.label_names),
            "data_spec": self.spec.to_dict(),
            "model_state": self.model.state_dict(),
        }


# ---------------------------------------------------------------------------------- reloading a trained run


@dataclass
class LoadedRun:
    cfg: Config
    spec: DataSpec
    model: MMERModel


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild the model of a finished run from its best.pt (weights_only), on the CPU in eval mode; `predict_run`
    hands it to Fabric."""
    path = rundir.require_run_dir(run_dir) / rundir.BEST
    ckpt = load_checkpoint(path)
    missing = [key for key in ("config", "data_spec", "model_state") if key not in ckpt]
    if missing:
        raise DataError(f"{path}: checkpoint lacks field(s) {', '.join(missing)} (not written by `mmer train`?)")
    cfg = cfglib.build(ckpt["config"], str(path))
    spec = DataSpec.from_dict(ckpt["data_spec"])
    model = build_model(cfg, spec)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise DataError(f"{path}: field 'model_state' does not fit the model its config builds ({str(exc).splitlines()[0]})") from None
    model.eval()
    return LoadedRun(cfg, spec, model)


def check_compatible(run_spec: DataSpec, data_spec: DataSpec, source: str) -> None:
    """A trained model can only read data with the same labels and modality dimensions."""
    if tuple(run_spec.label_names) != tuple(data_spec.label_names):
        raise DataError(f"{source}: labels {list(data_spec.label_names)} differ from the run's {list(run_spec.label_names)}")
    run_mods = {m.name: m.dim for m in run_spec.modalities}
    data_mods = {m.name: m.dim for m in data_spec.modalities}
    if run_mods != data_mods:
        raise DataError(f"{source}: modalities {data_mods} (name: dim) differ from the run's {run_mods}")
    if run_spec.personality_dim != data_spec.personality_dim or run_spec.multi_party != data_spec.multi_party:
        raise DataError(f"{source}: multi-party/personality layout differs from the run's dataset '{run_spec.name}'")


def load_run_data(run: LoadedRun, root: str | Path | None = None) -> DatasetBundle:
    """The run's own dataset, read with its saved data options, from `root` if given (a moved folder), else from
    the saved root."""
    data = run.cfg.data
    return load_dataset(data.name, root if root is not None else data.root, data.options)


def evaluate_run(run: LoadedRun, split: str = "test", transform: BatchTransform | None = None, bundle: DatasetBundle | None = None) -> dict[str, Any]:
    """Metrics of a run's best.pt on one split of its dataset (same code path as training)."""
    pred = predict_run(run, bundle if bundle is not None else load_run_data(run), split, transform)
    return split_metrics(pred, run.model.threshold, run.spec.label_names)


def predict_run(run: LoadedRun, bundle: DatasetBundle, split: str = "test", transform: BatchTransform | None = None) -> SplitPrediction:
    """Probabilities of a run's best.pt for every sample of one split of `bundle` (checked to fit the run)."""
    if split not in bundle.splits:
        raise DataError(f"{bundle.source}: no split '{split}' (has {', '.join(bundle.splits)})")
    check_compatible(run.spec, bundle.spec, bundle.source)
    fabric = Fabric(accelerator="cpu", devices=1)
    return predict_split(fabric, run.model, bundle.splits[split], run.cfg.data.eval_batch_size, transform)
