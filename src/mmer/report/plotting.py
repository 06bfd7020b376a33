"""Shared figure conventions: optional matplotlib, a colour-blind-safe palette, one DPI, atomic PNG writes.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot), so nothing here touches the global
backend of a notebook or script that imports mmer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmer.errors import MMERError
from mmer.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Okabe & Ito (2008) colours, distinguishable under the common colour-vision deficiencies; yellow last (weak on white)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.") * 2
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "PuOr"
DPI = 150
INSTALL_HINT = "pip install 'mmer[plots]' (or: pip install matplotlib)"


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib(what: str) -> None:
    if not has_matplotlib():
        raise MMERError(f"{what} needs matplotlib, which is not installed; install it with: {INSTALL_HINT}")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A figure with a constrained layout and `nrows x ncols` axes (one Axes, or an array of them)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def annotate_heatmap(ax: Any, values: Any, fmt: str = "{:.2f}", threshold: float | None = None) -> None:
    """Write each cell's value in it, dark text on light cells and light text on dark ones."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    mid = threshold if threshold is not None else (float(finite.min() + finite.max()) / 2 if finite.size else 0.0)
    small = values.shape[0] * values.shape[1] > 100
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6 if small else 8, color="black" if v > mid else "white")
