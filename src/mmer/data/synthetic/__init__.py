"""The built-in synthetic benchmark: `synth-party` (MEmoR-like) and `synth-dyadic` (CMU-MOSEI-like).

`generate(preset, seed, size)` draws a full DatasetBundle (train/valid/test, split by clip) together with its
reference points (`chance`, `ceiling`, `target_only` for synth-party and `late_fusion` for synth-dyadic). The world -- characters,
personalities, emission patterns -- is fixed per preset; `seed` redraws the clips. `draw` exposes the latent
truth behind a bundle (for benchmarks/synthetic_references.py). See docs/synthetic.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mmer.data.dataset import SPLITS, DatasetBundle, spec_from_splits
from mmer.data.synthetic import dyadic, party
from mmer.data.synthetic.oracle import dyadic_posterior, party_posterior
from mmer.data.synthetic.reference import chance_scores, oracle_scores
from mmer.errors import ConfigError, unknown_name

SIZES = ("tiny", "default", "large")


@dataclass(frozen=True)
class Preset:
    default_seed: int
    sizes: dict[str, tuple[int, int, int]]  # size -> clips per split (train, valid, test)


PRESETS = {
    "synth-party": Preset(11, {"tiny": (12, 6, 8), "default": (1000, 150, 300), "large": (4000, 500, 1000)}),
    "synth-dyadic": Preset(12, {"tiny": (40, 16, 24), "default": (3000, 500, 1000), "large": (12000, 2000, 4000)}),
}


@dataclass
class Draw:
    """The generator's output before it becomes a bundle: world parameters and latent truth per split."""

    preset: str
    size: str
    seed: int
    world: Any  # party.PartyWorld | dyadic.DyadicWorld
    parts: dict[str, Any]  # split -> party.PartyClips | dyadic.DyadicSamples


def draw(preset: str, seed: int | None = None, size: str = "default") -> Draw:
    """The latent draw behind `generate(preset, seed, size)`: same seeds, same clips."""
    if preset not in PRESETS:
        raise ConfigError(unknown_name("synthetic preset", preset, PRESETS))
    if size not in SIZES:
        raise ConfigError(unknown_name("synthetic size", size, SIZES))
    seed = PRESETS[preset].default_seed if seed is None else int(seed)
    if seed < 0:
        raise ConfigError(f"synthetic seed must be >= 0, got {seed}")
    counts = dict(zip(SPLITS, PRESETS[preset].sizes[size]))
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))  # one independent stream per split
    rngs = {name: np.random.default_rng(stream) for name, stream in zip(SPLITS, streams)}
    if preset == "synth-party":
        world = party.party_world()
        parts = {name: party.sample_clips(world, counts[name], rngs[name]) for name in SPLITS}
    else:
        world = dyadic.dyadic_world()
        parts = {name: dyadic.sample(world, counts[name], rngs[name]) for name in SPLITS}
    return Draw(preset, size, seed, world, parts)


@threadpool_limits.wrap(limits=1, user_api="blas")  # small products: BLAS threads only add overhead
def generate(preset: str, seed: int | None = None, size: str = "default") -> DatasetBundle:
    """Draw dataset `preset` ('synth-party' or 'synth-dyadic') of `size` with `seed` (None = the preset's own)."""
    d = draw(preset, seed, size)
    module = party if preset == "synth-party" else dyadic
    splits = {name: module.to_split(part, name) for name, part in d.parts.items()}
    spec = spec_from_splits(preset, module.EMOTIONS, splits, module.MODALITIES)
    test, names = splits["test"], spec.label_names
    y_test = test.labels.numpy().astype(np.int64)
    reference = {"chance": chance_scores(splits["train"].labels.numpy().astype(np.int64), y_test, names)}
    if preset == "synth-party":
        reference["target_only"] = oracle_scores(party_posterior(d.world, test, "none"), y_test, names)
        reference["ceiling"] = oracle_scores(party_posterior(d.world, test, "inferred"), y_test, names)
    else:
        reference["late_fusion"] = oracle_scores(dyadic_posterior(d.world, test, fusion="late"), y_test, names)
        reference["ceiling"] = oracle_scores(dyadic_posterior(d.world, test), y_test, names)
    bundle = DatasetBundle(spec, splits, f"generated in memory: {preset} size={size} seed={d.seed}", reference)
    bundle.validate()
    return bundle
