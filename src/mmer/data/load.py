"""Load any registered dataset by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmer.data.dataset import DatasetBundle
from mmer.registry import DATASETS


def load_dataset(name: str, root: str | Path | None = None, options: Any = None) -> DatasetBundle:
    """Read (or, for synthetic data without a root, generate) dataset `name` and validate it."""
    entry = DATASETS.get(name)
    if options is None and entry.options is not None:
        options = entry.options()
    bundle = entry.obj(Path(root) if root is not None else None, options)
    bundle.validate()
    return bundle
