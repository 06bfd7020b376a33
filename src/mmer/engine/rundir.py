"""The run directory contract (DESIGN.md): what a run writes and where.

    RUN_DIR/config.yaml          fully resolved config
    RUN_DIR/best.pt, last.pt     checkpoints (best on the selection metric; last every epoch, for --resume)
    RUN_DIR/history.csv          one row per epoch: every loss component and validation metric
    RUN_DIR/metrics.json         {"valid": {...}, "test": {...}} from best.pt
    RUN_DIR/predictions_test.csv one row per test sample
    RUN_DIR/train.log            the log
    RUN_DIR/run_info.json        parameters, best epoch, wall time, peak memory, processes, the data's reference points
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mmer.data import json_stream
from mmer.errors import DataError, MMERError
from mmer.io import make_output_dir, write_json, write_text

CONFIG = "config.yaml"
BEST = "best.pt"
LAST = "last.pt"
HISTORY = "history.csv"
METRICS = "metrics.json"
PREDICTIONS = "predictions_test.csv"
LOG = "train.log"
RUN_INFO = "run_info.json"


def prepare(run_dir: Path, resume: bool) -> None:
    """Refuse to reuse a non-empty run directory unless resuming one."""
    if resume:
        if not (run_dir / LAST).is_file():
            raise MMERError(f"cannot resume {run_dir}: no {LAST} there (start it without --resume)")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise MMERError(f"run directory {run_dir} exists and is not empty; use --resume to continue it or choose a new --out")
    make_output_dir(run_dir)


def discard_unstarted(run_dir: Path) -> None:
    """Remove a run folder this process created when set-up failed before training began (data or model could not
    be built: the folder holds only the log), so the same --out can be used again. Once config.yaml is written,
    the folder and its log stay."""
    if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOG]:
        (run_dir / LOG).unlink()
        run_dir.rmdir()


def prepare_fast_dev_run(run_dir: Path) -> None:
    """A smoke test writes only its log: into a new folder or one holding earlier smoke-test logs, never a run."""
    if run_dir.is_dir() and any(p.name != LOG for p in run_dir.iterdir()):
        raise MMERError(f"{run_dir} holds more than a fast-dev-run log (a run?); give --fast-dev-run a new --out")
    make_output_dir(run_dir)


def require_run_dir(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, or one DataError when there is no such folder (before any of its files is named)."""
    if not Path(run_dir).is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    return Path(run_dir)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / METRICS).is_file() and (run_dir / BEST).is_file()


def read_json(path: Path) -> dict[str, Any]:
    """A run file holding one JSON object (metrics.json, run_info.json), or one DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: missing")
    return json_stream.read_json_object(path)


def read_test_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json's 'test' entry, with its 'per_label' scores."""
    path = run_dir / METRICS
    test = read_json(path).get("test")
    if not isinstance(test, dict) or not isinstance(test.get("per_label"), dict):
        raise DataError(f"{path}: field 'test' with its 'per_label' scores is missing")
    return test


def read_history(run_dir: Path) -> list[dict[str, str]]:
    """The rows of history.csv (at least one)."""
    path = run_dir / HISTORY
    if not path.is_file():
        raise DataError(f"{path}: missing (the run's per-epoch history)")
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{path}: no epoch rows")
    return rows


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_dir / HISTORY, buf.getvalue())


def write_metrics(run_dir: Path, metrics: dict[str, dict[str, Any]]) -> None:
    write_json(run_dir / METRICS, metrics)


def predictions_csv(ids: list[str], probs: np.ndarray, labels: np.ndarray, label_names: list[str], threshold: float) -> str:
    """id, p_<label> per label, predicted set and gold set (labels joined by ';')."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", *[f"p_{name}" for name in label_names], "predicted", "gold"])
    predicted = probs > threshold
    for i, sample_id in enumerate(ids):
        writer.writerow(
            [
                sample_id,
                *[f"{p:.6f}" for p in probs[i]],
                ";".join(n for n, on in zip(label_names, predicted[i]) if on),
                ";".join(n for n, on in zip(label_names, labels[i] > 0.5) if on),
            ]
        )
    return buf.getvalue()


def get_logger(run_dir: Path | None, quiet: bool, rank: int = 0, name: str = "") -> logging.Logger:
    """Logger writing to RUN_DIR/train.log (rank 0) and, unless quiet, to stderr."""
    logger = logging.getLogger(f"mmer.run.{run_dir}.{rank}.{name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if rank != 0:
        logger.addHandler(logging.NullHandler())
        return logger
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / LOG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(fh)
    if not quiet:
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(sh)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
