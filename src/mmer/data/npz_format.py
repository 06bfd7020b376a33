"""The `mmer-npz` directory format: what `mmer data synth` writes and the template for a user's own data.

    DIR/meta.json            {"format": "mmer-npz", "version": 1, "name", "label_names", "modalities": [names],
                              "reference": {...} (optional, e.g. chance/ceiling of synthetic data)}
    DIR/{train,valid,test}.npz
        feat.<modality>   float32 [K, L, D]   features per clip (K clips)
        mask.<modality>   bool    [K, L]      True = real token
        labels            float32/uint8 [N, C] multi-hot per sample
        ids               str     [N]
        clip_index        int64   [N]         row of each sample's clip (omit when samples = clips)
        person, segment   int64   [K, T]      multi-party only; -1 = padding token
        target            bool    [N, T]      multi-party only; the sample's target token(s)
        personality       float32 [K, T, P]   optional, multi-party only

Arrays are read with `allow_pickle=False`, so a file can never run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmer.data.dataset import SPLITS, DatasetBundle, SplitData, spec_from_splits
from mmer.data.json_stream import read_json_object
from mmer.errors import DataError
from mmer.io import atomic_path, make_output_dir, write_json

FORMAT = "mmer-npz"
VERSION = 1


def read_npz_dir(root: str | Path) -> DatasetBundle:
    root = Path(root)
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{root}: no meta.json; not an {FORMAT} directory (write one with `mmer data synth`)")
    meta = read_json_object(meta_path)
    for key in ("format", "label_names", "modalities"):
        if key not in meta:
            raise DataError(f"{meta_path}: missing field '{key}'")
    for key in ("label_names", "modalities"):
        if not isinstance(meta[key], list) or not meta[key] or not all(isinstance(v, str) and v for v in meta[key]):
            raise DataError(f"{meta_path}: field '{key}' must be a non-empty list of names, got {meta[key]!r}")
    if meta["format"] != FORMAT or meta.get("version", VERSION) != VERSION:
        raise DataError(f"{meta_path}: field 'format' is {meta['format']!r} v{meta.get('version')}, expected {FORMAT!r} v{VERSION}")
    modalities = list(meta["modalities"])
    splits = {split: _read_split(root / f"{split}.npz", modalities) for split in SPLITS}
    bundle = DatasetBundle(
        spec=spec_from_splits(meta.get("name", root.name), meta["label_names"], splits, modalities),
        splits=splits,
        source=str(root),
        reference=meta.get("reference", {}),
    )
    bundle.validate()
    return bundle


def _read_split(path: Path, modalities: list[str]) -> SplitData:
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path}: holds a pickled object array, which mmer refuses to load (unsafe); save plain arrays") from None
        raise DataError(f"{path}: corrupt or truncated npz file ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt or truncated npz file ({exc})") from None

    def take(key: str, required: bool = True, kinds: str = "biuf") -> np.ndarray | None:
        """Array `key`, of a dtype kind in `kinds` (numpy kinds: b bool, i/u integers, f floats, U text)."""
        if key not in arrays:
            if required:
                raise DataError(f"{path}: missing array '{key}'")
            return None
        if arrays[key].dtype.kind not in kinds:
            raise DataError(f"{path}: array '{key}' has dtype {arrays[key].dtype}; expected {'numbers or text' if 'U' in kinds else 'numbers'}")
        return arrays[key]

    labels = take("labels")
    assert labels is not None
    if labels.ndim != 2:
        raise DataError(f"{path}: array 'labels' must be [N, C], got shape {labels.shape}")
    n = labels.shape[0]
    ids = take("ids", kinds="biuU")
    clip_index = take("clip_index", required=False)
    person = take("person", required=False)
    features, masks = {}, {}
    for m in modalities:
        features[m] = torch.from_numpy(np.ascontiguousarray(take(f"feat.{m}"), dtype=np.float32))
        masks[m] = torch.from_numpy(np.ascontiguousarray(take(f"mask.{m}")).astype(bool))
    party: dict[str, Any] = {}
    if person is not None:
        party = {
            "person": torch.from_numpy(person.astype(np.int64)),
            "segment": torch.from_numpy(take("segment").astype(np.int64)),
            "target": torch.from_numpy(take("target").astype(bool)),
        }
        personality = take("personality", required=False)
        if personality is not None:
            party["personality"] = torch.from_numpy(personality.astype(np.float32))
    assert ids is not None
    return SplitData(
        features=features,
        masks=masks,
        labels=torch.from_numpy(labels.astype(np.float32)),
        ids=[str(i) for i in ids.tolist()],
        clip_index=torch.from_numpy((np.arange(n) if clip_index is None else clip_index).astype(np.int64)),
        **party,
    )


def check_output_dir(root: Path) -> None:
    """`root` must be a new or empty folder: checked before generating data (`mmer data synth`) and when writing."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        raise DataError(f"{root} exists and is not empty; refusing to overwrite it")


def write_npz_dir(bundle: DatasetBundle, root: str | Path) -> None:
    """Write `bundle` to an empty or new directory `root` (each file written atomically)."""
    root = Path(root)
    check_output_dir(root)
    make_output_dir(root)
    for name, split in bundle.splits.items():
        arrays: dict[str, np.ndarray] = {
            "labels": split.labels.numpy().astype(np.uint8),
            "ids": np.asarray(split.ids, dtype=str),
            "clip_index": split.clip_index.numpy(),
        }
        for m in bundle.spec.modality_names:
            arrays[f"feat.{m}"] = split.features[m].numpy()
            arrays[f"mask.{m}"] = split.masks[m].numpy()
        if split.person is not None:
            arrays["person"] = split.person.numpy()
            arrays["segment"] = split.segment.numpy()  # type: ignore[union-attr]
            arrays["target"] = split.target.numpy()  # type: ignore[union-attr]
            if split.personality is not None:
                arrays["personality"] = split.personality.numpy()
        with atomic_path(root / f"{name}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    write_json(
        root / "meta.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "name": bundle.spec.name,
            "label_names": list(bundle.spec.label_names),
            "modalities": list(bundle.spec.modality_names),
            "reference": bundle.reference,
        },
    )
