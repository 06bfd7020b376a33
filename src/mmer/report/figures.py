"""The figures of `mmer report`, one function each: data in, PNG out.

Figures from the run directory alone: training curves (history.csv), per-label P/R/F1 (metrics.json), label
co-occurrence (predictions_test.csv). Figures from the model's `analysis()` outputs (analysis.py): t-SNE of
commonality vs specificity features (RAMer Fig. 3a-b, TAILOR Fig. 6), t-SNE of reconstruction embeddings by
modality and by emotion (RAMer Fig. 3c-d), modality-to-label dependency (RAMer Fig. 4, CARAT Fig. 4a / App. E),
learned label correlation (TAILOR Fig. 7) and discriminator modality probabilities (TAILOR Fig. 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmer.report import plotting
from mmer.report.analysis import AnalysisData

CURVE_METRICS = ("acc", "precision", "recall", "micro_f1", "macro_f1", "weighted_f1")


def _lighten(hex_color: str, amount: float = 0.55) -> tuple[float, float, float]:
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return tuple(rgb + (1 - rgb) * amount)


# ------------------------------------------------------------------------------------ from the run files


def training_curves(history: list[dict[str, str]], title: str, path: Path) -> Path:
    """(a) training loss components per epoch, (b) validation metrics per epoch, (c) learning rate."""
    epochs = [int(r["epoch"]) for r in history]
    fig, (ax_loss, ax_valid, ax_lr) = plotting.new_figure(15, 4.4, 1, 3)
    loss_keys = [k for k in history[0] if k.startswith("train_loss")]
    loss_keys.sort(key=lambda k: (k != "train_loss", k))
    if loss_keys:
        values = {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in history]) for k in loss_keys}
        for i, key in enumerate(loss_keys):
            total = key == "train_loss"
            name = "total (weighted)" if total else key.removeprefix("train_loss_")
            ax_loss.plot(epochs, values[key], color="black" if total else plotting.color(i), linewidth=2.2 if total else 1.4,
                         marker=plotting.marker(i), markersize=4, linestyle="-" if total else plotting.LINESTYLES[i % 4], label=name)  # fmt: skip
        finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
            ax_loss.set_yscale("log")
            ax_loss.set_ylabel("loss (log scale, unweighted components)")
        else:
            ax_loss.set_ylabel("loss (unweighted components)")
        ax_loss.legend(fontsize=7, ncol=2 if len(loss_keys) > 5 else 1)
    else:
        ax_loss.text(0.5, 0.5, "no gradient training\n(fitted in one pass)", ha="center", va="center", transform=ax_loss.transAxes)
        ax_loss.set_ylabel("loss")
    ax_loss.set_title("(a) Training losses")
    best = [e for e, r in zip(epochs, history) if r.get("best") == "1"]
    for i, metric in enumerate(m for m in CURVE_METRICS if f"valid_{m}" in history[0]):
        ax_valid.plot(epochs, [float(r[f"valid_{metric}"]) for r in history], color=plotting.color(i),
                      marker=plotting.marker(i), markersize=4, linestyle=plotting.LINESTYLES[i % 4], label=metric)  # fmt: skip
    if best:
        ax_valid.axvline(best[-1], color="grey", linestyle=":", linewidth=1.2, label=f"selected (epoch {best[-1]})")
    ax_valid.set_ylabel("validation score")
    ax_valid.set_ylim(0, 1)
    ax_valid.set_title("(b) Validation metrics")
    ax_valid.legend(fontsize=7, loc="lower right")
    if "lr" in history[0] and any(r.get("lr") for r in history):
        ax_lr.plot(epochs, [float(r["lr"]) for r in history], color=plotting.color(0), marker="o", markersize=4)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    else:
        ax_lr.text(0.5, 0.5, "no learning rate\n(fitted in one pass)", ha="center", va="center", transform=ax_lr.transAxes)
    ax_lr.set_ylabel("learning rate at epoch end")
    ax_lr.set_title("(c) Learning rate")
    for ax in (ax_loss, ax_valid, ax_lr):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    fig.suptitle(f"Training curves: {title}")
    return plotting.save_png(fig, path)


def per_label_scores(per_label: dict[str, dict[str, float]], overall: dict[str, Any], title: str, path: Path) -> Path:
    """Grouped bars of precision, recall and F1 per label, with each label's support."""
    names = list(per_label)
    x = np.arange(len(names))
    fig, ax = plotting.new_figure(max(6.5, 0.9 * len(names) + 2), 4.4)
    width = 0.26
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * width, [per_label[n][key] for n in names], width, color=plotting.color(i), label=key.capitalize() if key != "f1" else "F1",
               hatch=("", "//", "..")[i], edgecolor="white", linewidth=0.5)  # fmt: skip
    ax.axhline(overall["micro_f1"], color="black", linestyle="--", linewidth=1, label=f"micro-F1 {overall['micro_f1']:.3f}")
    ax.axhline(overall["macro_f1"], color="grey", linestyle=":", linewidth=1.2, label=f"macro-F1 {overall['macro_f1']:.3f}")
    ax.set_xticks(x, [f"{n}\n(n={per_label[n]['support']})" for n in names], fontsize=8 if len(names) > 10 else 9)
    ax.set_ylim(0, 1.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("test score")
    ax.set_xlabel("label (test support)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=5, loc="upper center")
    ax.set_title(f"Per-label precision, recall and F1: {title}")
    return plotting.save_png(fig, path)


def label_cooccurrence(gold: np.ndarray, predicted: np.ndarray, label_names: Sequence[str], title: str, path: Path) -> Path:
    """P(column label | row label) in the gold test labels and in the predictions, side by side."""
    fig, axes = plotting.new_figure(2 * _heat_size(len(label_names)) + 1.5, _heat_size(len(label_names)), 1, 2)
    image = None
    for ax, y, name in zip(axes, (gold, predicted), ("(a) Gold labels", "(b) Predicted labels")):
        matrix = conditional_cooccurrence(y)
        image = ax.imshow(matrix, cmap=plotting.SEQUENTIAL_CMAP, vmin=0, vmax=1)
        plotting.annotate_heatmap(ax, matrix, threshold=0.5)
        rates = y.mean(axis=0)
        ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
        ax.set_yticks(range(len(label_names)), [f"{n} ({r:.2f})" for n, r in zip(label_names, rates)])
        ax.set_xlabel("label j")
        ax.set_ylabel("label i (share of test samples)")
        ax.set_title(f"{name}: P(j | i)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="P(label j | label i); diagonal blank")
    fig.suptitle(f"Label co-occurrence on the test split: {title}")
    return plotting.save_png(fig, path)


def conditional_cooccurrence(y: np.ndarray) -> np.ndarray:
    """[C, C] with entry (i, j) = #(i and j) / #i (NaN on the diagonal and for labels that never occur)."""
    y = np.asarray(y, dtype=np.float64)
    counts = y.T @ y  # [C, C]
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = counts / np.diag(counts)[:, None]
    matrix[~np.isfinite(matrix)] = np.nan
    np.fill_diagonal(matrix, np.nan)
    return matrix


def _heat_size(c: int) -> float:
    return float(np.clip(0.55 * c + 2.2, 4.5, 11))


# ------------------------------------------------------------------------- from the model's analysis()


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(points)


def tsne_common_specific(data: AnalysisData, index: np.ndarray, seed: int, title: str, path: Path) -> Path:
    """One t-SNE of every (sample, modality) commonality and specificity vector: hue = modality,
    light triangles = commonality, dark circles = specificity (RAMer Fig. 3a-b, TAILOR Fig. 6)."""
    common, specific = data.arrays["common"][index], data.arrays["specific"][index]  # [n, M, D]
    n, m, d = common.shape
    present = data.present[index]  # [n, M]
    points = np.concatenate([common.reshape(n * m, d), specific.reshape(n * m, d)])
    keep = np.concatenate([present.reshape(-1), present.reshape(-1)])
    xy = _tsne(points[keep], seed)
    part = np.repeat([0, 1], n * m)[keep]
    modality = np.tile(np.repeat(np.arange(m)[None, :], n, axis=0).reshape(-1), 2)[keep]
    fig, ax = plotting.new_figure(7.5, 6.4)
    for j, name in enumerate(data.modalities):
        base = plotting.color(j)
        sel = (modality == j) & (part == 1)
        ax.scatter(*xy[sel].T, s=10, color=base, marker="o", alpha=0.8, label=f"{name}: specificity")
        sel = (modality == j) & (part == 0)
        ax.scatter(*xy[sel].T, s=14, color=_lighten(base), marker="^", alpha=0.9, edgecolors=base, linewidths=0.3, label=f"{name}: commonality")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(fontsize=7, markerscale=1.6, ncol=2, loc="best")
    ax.set_title(f"Commonality vs specificity features ({len(index)} test samples, present modalities only)\n{title}", fontsize=10)
    return plotting.save_png(fig, path)


def emotion_groups(labels: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Group id per sample: the label index for single-label samples, C for 'no label', C+1 for '2+ labels'."""
    counts = labels.sum(axis=1)
    group = np.where(counts == 1, labels.argmax(axis=1), np.where(counts == 0, len(names), len(names) + 1))
    return group, [*names, "no label", "2+ labels"]


def tsne_reconstructed(data: AnalysisData, index: np.ndarray, seed: int, title: str, path: Path) -> Path:
    """t-SNE of reconstruction embeddings, (a) by modality and (b) by emotion (RAMer Fig. 3c-d)."""
    emb = data.arrays["reconstructed"][index]  # [n, M, D]
    n, m, d = emb.shape
    present = data.present[index].reshape(-1)
    xy = _tsne(emb.reshape(n * m, d)[present], seed)
    modality = np.repeat(np.arange(m)[None, :], n, axis=0).reshape(-1)[present]
    group, group_names = emotion_groups(data.labels[index], data.label_names)
    group = np.repeat(group, m)[present]
    fig, (ax_m, ax_e) = plotting.new_figure(14, 6.2, 1, 2)
    for j, name in enumerate(data.modalities):
        sel = modality == j
        ax_m.scatter(*xy[sel].T, s=10, color=plotting.color(j), marker=plotting.marker(j), alpha=0.8, label=name)
    ax_m.set_title("(a) coloured by modality")
    c = len(data.label_names)
    for g, name in enumerate(group_names):
        sel = group == g
        if not sel.any():
            continue
        if g >= c:  # no label / several labels: grey, behind the single-label points
            ax_e.scatter(*xy[sel].T, s=6, color="#BBBBBB" if g == c else "#777777", marker=".", alpha=0.6, label=f"{name} ({sel.sum()})", zorder=1)
        else:
            ax_e.scatter(*xy[sel].T, s=12, color=plotting.color(g), marker=plotting.MARKERS[(g // len(plotting.PALETTE)) % len(plotting.MARKERS)],
                         alpha=0.85, label=f"{name} ({sel.sum()})", zorder=2)  # fmt: skip
    ax_e.set_title("(b) coloured by emotion (single-label samples; others grey)")
    for ax in (ax_m, ax_e):
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(fontsize=7, markerscale=1.6, loc="best", ncol=1 if len(group_names) < 10 else 2)
    fig.suptitle(f"Reconstruction embeddings ({len(index)} test samples x modalities present): {title}")
    return plotting.save_png(fig, path)


def modality_label_dependency(data: AnalysisData, title: str, path: Path) -> Path:
    """Which modality each label's prediction relies on (RAMer Fig. 4, CARAT Fig. 4a):
    (a) share of the label's positive test samples in which each modality gives the strongest evidence for it
    (among the modalities present in the sample); (b) mean evidence on positive minus on negative samples."""
    evidence = data.arrays["modality_label"]  # [N, M, C]
    strongest, gap = modality_label_summary(evidence, data.labels, data.present)
    names, mods = data.label_names, data.modalities
    size = _heat_size(len(names))
    fig, (ax_a, ax_b) = plotting.new_figure(2 * max(3.2, 0.9 * len(mods) + 2.4) + 1.5, size, 1, 2)
    image = ax_a.imshow(strongest, cmap=plotting.SEQUENTIAL_CMAP, vmin=0, vmax=1, aspect="auto")
    plotting.annotate_heatmap(ax_a, strongest, threshold=0.5)
    fig.colorbar(image, ax=ax_a, label="share of positive samples")
    ax_a.set_title("(a) Strongest modality per label")
    limit = float(np.nanmax(np.abs(gap))) if np.isfinite(gap).any() else 1.0
    image = ax_b.imshow(gap, cmap=plotting.DIVERGING_CMAP, vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), v in np.ndenumerate(gap):
        if np.isfinite(v):
            ax_b.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(image, ax=ax_b, label="mean evidence: positives - negatives")
    ax_b.set_title("(b) Evidence gap per modality")
    for ax in (ax_a, ax_b):
        ax.set_xticks(range(len(mods)), mods)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("modality")
        ax.set_ylabel("label")
    fig.suptitle(f"Modality-to-label dependency (test split): {title}")
    return plotting.save_png(fig, path)


def modality_label_summary(evidence: np.ndarray, labels: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """evidence [N, M, C], labels [N, C], present [N, M] -> (strongest share [C, M], evidence gap [C, M]).

    strongest[c, m]: among samples with label c, the share where modality m (present) has the largest evidence
    for c. gap[c, m]: mean evidence of m for c on samples with c minus on samples without c (present only).
    NaN where a label has no positive (or negative) sample with that modality.
    """
    n, m, c = evidence.shape
    masked = np.where(present[:, :, None], evidence, -np.inf)  # [N, M, C]
    top = masked.argmax(axis=1)  # [N, C]
    onehot = top[:, None, :] == np.arange(m)[None, :, None]  # [N, M, C]
    positive = labels.astype(bool)  # [N, C]
    has_any = present.any(axis=1)[:, None] & positive  # [N, C]
    counts = has_any.sum(axis=0)  # [C]
    with np.errstate(invalid="ignore", divide="ignore"):
        strongest = (onehot & has_any[:, None, :]).sum(axis=0).T / counts[:, None]  # [C, M]
        pos = present[:, :, None] & positive[:, None, :]  # [N, M, C]
        neg = present[:, :, None] & ~positive[:, None, :]
        mean_pos = np.where(pos, evidence, 0).sum(axis=0) / pos.sum(axis=0)  # [M, C]
        mean_neg = np.where(neg, evidence, 0).sum(axis=0) / neg.sum(axis=0)
    strongest[counts == 0] = np.nan
    return strongest, (mean_pos - mean_neg).T


def label_correlation(data: AnalysisData, title: str, path: Path) -> Path:
    """The model's learned label-to-label dependency, row label -> column label (TAILOR Fig. 7)."""
    matrix = data.arrays["label_correlation"]  # [C, C]
    names = data.label_names
    size = _heat_size(len(names))
    fig, ax = plotting.new_figure(size + 1.3, size)
    if matrix.min() < 0:
        limit = float(np.abs(matrix).max()) or 1.0
        image = ax.imshow(matrix, cmap=plotting.DIVERGING_CMAP, vmin=-limit, vmax=limit)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.6 * limit else "black")
    else:
        image = ax.imshow(matrix, cmap=plotting.SEQUENTIAL_CMAP)
        plotting.annotate_heatmap(ax, matrix)
    fig.colorbar(image, ax=ax, shrink=0.85, label="learned weight (mean over test batches)")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("influenced label")
    ax.set_ylabel("influencing label")
    ax.set_title(f"Learned label correlation: {title}", fontsize=10)
    return plotting.save_png(fig, path)


def discriminator_probabilities(data: AnalysisData, title: str, path: Path) -> Path:
    """For the features of each source modality, the modality discriminator's mean probability of every
    modality (TAILOR Fig. 5); 1/M (dashed) means the discriminator cannot tell the source."""
    panels = [("discriminator_probs", "commonality features")]
    if data.has("discriminator_probs_specific"):
        panels.append(("discriminator_probs_specific", "specificity features"))
    mods = data.modalities
    m = len(mods)
    fig, axes = plotting.new_figure(6.5 * len(panels), 4.4, 1, len(panels), sharey=True)
    axes = np.atleast_1d(axes)
    x = np.arange(m)
    width = 0.8 / m
    for ax, (key, name), letter in zip(axes, panels, "ab"):
        probs = data.arrays[key]  # [N, M source, M predicted]
        for j in range(m):  # predicted modality
            median, low, high = [], [], []
            for src in range(m):
                vals = probs[data.present[:, src], src, j]
                q = np.percentile(vals, [25, 50, 75]) if vals.size else np.full(3, np.nan)
                low.append(q[1] - q[0])
                median.append(q[1])
                high.append(q[2] - q[1])
            ax.bar(x + (j - (m - 1) / 2) * width, median, width, yerr=[low, high], capsize=2, color=plotting.color(j),
                   hatch=("", "//", "..", "xx", "\\\\")[j % 5], edgecolor="white", linewidth=0.5, label=f"P({mods[j]} | ·)")  # fmt: skip
        ax.axhline(1 / m, color="black", linestyle="--", linewidth=1, label=f"1/{m} (indistinguishable)")
        ax.set_xticks(x, [f"{name.split()[0]} of {mod}" for mod in mods])
        ax.set_xlabel("source of the features")
        ax.set_title(f"({letter}) {name}")
        ax.set_ylim(0, 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncol=min(m + 1, 4))
    axes[0].set_ylabel("discriminator probability\n(median, bars: interquartile range)")
    fig.suptitle(f"Modality discriminator: {title}")
    return plotting.save_png(fig, path)
