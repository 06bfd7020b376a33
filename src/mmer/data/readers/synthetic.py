"""`synth-party`, `synth-dyadic` (the built-in synthetic benchmark) and `npz` (your own data in mmer-npz format).

Without a root the synthetic datasets are generated in memory (docs/synthetic.md) and cached per (preset, size,
seed) for the life of the process, since tests and commands load them repeatedly; every call gets its own
bundle/split objects around the shared, read-only tensors. With a root they are read from a directory written by
`mmer data synth`, which must hold that preset; `size` and `seed` then play no part.

`npz` reads any directory in the mmer-npz format (`mmer.data.npz_format`): the template for bringing your own
data — write meta.json and train/valid/test.npz as described there and train with `--dataset npz --root DIR`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmer.data.dataset import DatasetBundle
from mmer.data.npz_format import read_npz_dir
from mmer.data.synthetic import PRESETS, generate
from mmer.errors import DataError
from mmer.registry import DATASETS

Size = Literal["tiny", "default", "large"]


@dataclass
class SynthPartyOptions:
    size: Size = "default"  # tiny (tests) | default (benchmark) | large; only when generating (no root)
    seed: int = PRESETS["synth-party"].default_seed  # generator seed; only when generating


@dataclass
class SynthDyadicOptions:
    size: Size = "default"
    seed: int = PRESETS["synth-dyadic"].default_seed


@DATASETS.register("synth-party", options=SynthPartyOptions, summary="synthetic MEmoR-like multi-party benchmark (built in, 9 emotions)")
def load_synth_party(root: Path | None, options: SynthPartyOptions | None) -> DatasetBundle:
    options = options or SynthPartyOptions()
    return _synthetic("synth-party", root, options.size, options.seed)


@DATASETS.register("synth-dyadic", options=SynthDyadicOptions, summary="synthetic CMU-MOSEI-like benchmark (built in, 6 emotions)")
def load_synth_dyadic(root: Path | None, options: SynthDyadicOptions | None) -> DatasetBundle:
    options = options or SynthDyadicOptions()
    return _synthetic("synth-dyadic", root, options.size, options.seed)


@DATASETS.register("npz", summary="your own data in the mmer-npz format (--root DIR; layout in docs/synthetic.md)", needs_root=True)
def load_npz(root: Path | None, options: None) -> DatasetBundle:
    if root is None:
        raise DataError(
            "dataset 'npz' needs --root: a directory with meta.json and train/valid/test.npz in the mmer-npz format "
            "(see mmer/data/npz_format.py; `mmer data synth` writes an example)"
        )
    return read_npz_dir(root)


def _synthetic(preset: str, root: Path | None, size: str, seed: int) -> DatasetBundle:
    if root is None:
        return _fresh_view(_generated(preset, size, seed))
    bundle = read_npz_dir(root)
    if bundle.spec.name != preset:
        raise DataError(
            f"{Path(root) / 'meta.json'}: field 'name' is {bundle.spec.name!r}, expected {preset!r} "
            f"(read other mmer-npz directories with --dataset npz)"
        )
    return bundle


@functools.lru_cache(maxsize=8)
def _generated(preset: str, size: str, seed: int) -> DatasetBundle:
    return generate(preset, seed=seed, size=size)


def _fresh_view(bundle: DatasetBundle) -> DatasetBundle:
    """New bundle and split objects over the cached tensors, so a caller replacing fields cannot touch the cache."""
    splits = {
        name: dataclasses.replace(split, features=dict(split.features), masks=dict(split.masks), ids=list(split.ids), extras=dict(split.extras))
        for name, split in bundle.splits.items()
    }
    reference = {name: dict(metrics) for name, metrics in bundle.reference.items()}
    return DatasetBundle(bundle.spec, splits, bundle.source, reference)
