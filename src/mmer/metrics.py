"""The one metric suite; every table, log and benchmark reads these definitions.

- acc: example-based Jaccard |Y ∩ Ŷ| / |Y ∪ Ŷ| averaged over samples, where a sample with both sets empty scores
  0 (what all four official codes compute; equal to sklearn's jaccard_score(average="samples", zero_division=0)).
- precision, recall, micro_f1: micro-averaged over all (sample, label) cells. Precision is TP / predicted
  positives; the official codes print these two swapped.
- macro_f1: unweighted mean of per-label F1; weighted_f1: per-label F1 weighted by *true* support.
- hamming_loss: fraction of wrong cells.
A label with no true and no predicted positives has F1 0 (sklearn zero_division=0), as in the official codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, hamming_loss, jaccard_score, precision_recall_fscore_support

METRIC_KEYS = ("acc", "hamming_loss", "precision", "recall", "micro_f1", "macro_f1", "weighted_f1")
LOWER_IS_BETTER = frozenset({"hamming_loss"})


def binarize(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Prediction rule shared by every model: probability strictly above the threshold."""
    return (np.asarray(probs) > threshold).astype(np.int64)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """All metrics of DESIGN.md for 0/1 matrices [N, C]; floats, plus `per_label`."""
    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = np.asarray(y_pred).astype(np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal [N, C] matrices")
    if y_true.shape[1] != len(label_names):
        raise ValueError(f"{y_true.shape[1]} label columns but {len(label_names)} label names")
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    lp, lr, lf, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    return {
        "acc": float(jaccard_score(y_true, y_pred, average="samples", zero_division=0)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "precision": float(p),
        "recall": float(r),
        "micro_f1": float(f),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": _weighted_f1(lf, support),
        "per_label": {
            name: {"precision": float(lp[j]), "recall": float(lr[j]), "f1": float(lf[j]), "support": int(support[j])}
            for j, name in enumerate(label_names)
        },
    }


def _weighted_f1(per_label_f1: np.ndarray, support: np.ndarray) -> float:
    total = support.sum()
    return float((per_label_f1 * support).sum() / total) if total > 0 else 0.0


def selection_mode(metric: str) -> str:
    """'min' for a metric where lower is better (hamming_loss), else 'max' (`train.select_mode: auto`)."""
    return "min" if metric in LOWER_IS_BETTER else "max"


def is_better(new: float, best: float | None, mode: str) -> bool:
    """Selection rule: strictly better under `mode` ('max' or 'min'); ties keep the earlier checkpoint."""
    if best is None:
        return True
    return new > best if mode == "max" else new < best


def format_table(metrics: dict[str, dict[str, Any]], keys: Sequence[str] = METRIC_KEYS) -> str:
    """Markdown table, one row per split: the table `mmer train` / `mmer evaluate` print."""
    header = "| split | " + " | ".join(keys) + " |"
    rule = "|---|" + "---:|" * len(keys)
    rows = [f"| {split} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |" for split, m in metrics.items()]
    return "\n".join([header, rule, *rows])
