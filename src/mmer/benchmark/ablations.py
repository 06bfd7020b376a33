"""Ablation files: the papers' ablation tables as named sets of config overrides.

Format (YAML): a mapping from row name to a list of `key=value` override strings (the `--set` syntax):

    # src/mmer/configs/ablations/ramer_table4.yaml
    "(1) w/o L_sc": [model.lambda_adv=0]
    "(4) w/o L_scl": [model.lambda_scl=0]
    "(11) RAMer": []                      # the full model: no override

Row order is table order. A row with no overrides is the plain model and shares its runs. A file is given by
path or, for the files shipped in `mmer/configs/ablations/`, by name (`ramer_table4`). A file whose name starts
with `<model>_` for a registered model ablates that model only; any other file applies to every benchmarked
model. Override keys are checked against each model's config when the grid is planned, so an unknown key is an
error naming the file, the row and the key before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmer.config import parse_override, read_yaml
from mmer.errors import ConfigError, did_you_mean
from mmer.registry import MODELS


def builtin_dir() -> Path:
    return Path(str(resources.files("mmer") / "configs" / "ablations"))


@dataclass(frozen=True)
class AblationRow:
    name: str  # as written in the file, shown in the table
    slug: str  # directory-safe form, used in run directory names
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class AblationTable:
    name: str  # file stem, e.g. ramer_table4
    path: Path
    model: str | None  # the model this file ablates; None = every benchmarked model
    rows: tuple[AblationRow, ...]


def slugify(name: str) -> str:
    """'(1) w/o L_sc' -> '1-w-o-l-sc': lower case, runs of anything but letters and digits become one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def builtin_names() -> list[str]:
    folder = builtin_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_ablation_file(ref: str) -> Path:
    """A path to an existing file, or the name of a shipped ablation file (with or without .yaml)."""
    path = Path(ref)
    if path.is_file():
        return path
    stem = ref[: -len(".yaml")] if ref.endswith(".yaml") else ref
    shipped = builtin_dir() / f"{stem}.yaml"
    if "/" not in ref and shipped.is_file():
        return shipped
    names = builtin_names()
    listing = ", ".join(names) if names else "none shipped yet"
    raise ConfigError(f"ablation file '{ref}' is neither an existing file nor a shipped ablation{did_you_mean(stem, names)}; shipped: {listing}")


def load_ablation_file(ref: str) -> AblationTable:
    """Read an ablation file (a path, or the name of one under configs/ablations/) into its named override rows."""
    path = find_ablation_file(ref)
    data = read_yaml(path, "ablation file")
    if not data:
        raise ConfigError(f"ablation file {path} has no rows; expected a mapping 'row name: [key=value, ...]'")
    rows: list[AblationRow] = []
    slugs: dict[str, str] = {}
    for name, overrides in data.items():
        where = f"ablation file {path}, row {name!r}"
        name = str(name)
        if overrides is None:
            overrides = []
        if isinstance(overrides, str) or not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ConfigError(f"{where}: expected a list of 'key=value' strings, got {overrides!r}")
        for text in overrides:
            try:
                parse_override(text)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        slug = slugify(name)
        if not slug:
            raise ConfigError(f"{where}: the row name needs at least one letter or digit")
        if slug in slugs:
            raise ConfigError(f"{where}: its directory name '{slug}' equals that of row {slugs[slug]!r}; rename one")
        slugs[slug] = name
        rows.append(AblationRow(name, slug, tuple(overrides)))
    return AblationTable(path.stem, path, _model_of(path.stem), tuple(rows))


def _model_of(stem: str) -> str | None:
    prefix = stem.split("_", 1)[0]
    return prefix if "_" in stem and prefix in MODELS else None
