"""The "label-sequence" `.pt` layout of TAILOR/CARAT/RAMer's processed files: CMU-MOSEI's `train_valid_test.pt`
(`mosei.py`) and CARAT's converted M3ED file `m3ed_data_60.pt` (`m3ed.py`):

    {'train' | 'valid' | 'test': {'src-text': [N, L, D_t], 'src-visual': [N, L, D_v], 'src-audio': [N, L, D_a],
                                  'tgt': N lists [2 (<s>), e_1, ..., e_k, 3 (</s>)]},
     'dict': {'src': ..., 'tgt': {name: id}}, 'settings': argparse.Namespace}

Feature fields are one stacked array per split or a list of per-sample [L, D] arrays. Emotion id e sets label
e - 4. The helpers for single-speaker splits (fields, labels, ids, masks) are shared with MulT's unaligned pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mmer.data.dataset import SPLITS, DatasetBundle, SplitData, spec_from_splits
from mmer.errors import DataError

MODALITIES = ("text", "visual", "audio")
BOS, EOS, FIRST_EMOTION_ID = 2, 3, 4
MaskMode = Literal["real", "ones"]  # real: padded steps are masked out; ones: every step is real (official loaders)


def label_sequence_bundle(
    data: Any,
    source: str,
    name: str,
    default_labels: Sequence[str],
    fields: Mapping[str, str],
    masks: MaskMode = "real",
    *,
    owned: bool = False,
    lengths_field: str | None = None,
) -> DatasetBundle:
    """A DatasetBundle from a loaded label-sequence `.pt` (see module doc); `data` is never modified unless `owned`.

    `fields` maps modality name -> split field, in modality order. With real masks a step is padding when every
    modality is zero there (aligned data pads all modalities at the same steps), or, when the split carries
    `lengths_field`, when it lies beyond the sample's length.
    """
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: expected a dict with 'train', 'valid' and 'test', got {type(data).__name__}")
    splits = {}
    for split in SPLITS:
        part = split_dict(data, source, split)
        labels = labels_from_targets(field(part, "tgt", source, split), len(default_labels), source, split)
        features = {}
        for modality, key in fields.items():
            features[modality] = stack_float32(field(part, key, source, split), source, split, key, copy=not owned)
            if owned and isinstance(part, dict):
                part[key] = None  # the float32 copy replaces a per-sample list: free it now
            if len(features[modality]) != len(labels):
                raise DataError(f"{source}: split '{split}', field '{key}' has {len(features[modality])} samples but 'tgt' has {len(labels)}")
        lengths = {x.shape[1] for x in features.values()}
        if len(lengths) > 1:
            shown = ", ".join(f"'{fields[m]}' {x.shape[1]}" for m, x in features.items())
            raise DataError(f"{source}: split '{split}': aligned fields must share one sequence length, got {shown}")
        if masks == "ones":
            shared = ones_mask(next(iter(features.values())))
        elif lengths_field is not None and lengths_field in part:
            shared = length_mask(part[lengths_field], len(labels), lengths.pop(), source, split, lengths_field)
        else:
            shared = padding_mask(list(features.values()))
        for modality, key in fields.items():
            if key == "src-audio":  # COVAREP holds -inf; the official loaders set it to 0
                replace_neg_inf(features[modality])
        masks_by_modality = {m: shared.clone() for m in features}
        splits[split] = make_split(features, masks_by_modality, labels, sample_ids(part, len(labels), split))
    names = label_names_from_vocab(data, len(default_labels), default_labels)
    return DatasetBundle(spec_from_splits(name, names, splits, list(fields)), splits, source)


# ------------------------------------------------------------------------------------------------ fields


def split_dict(data: Any, source: str | Path, split: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: expected a dict with 'train', 'valid' and 'test', got {type(data).__name__}")
    if split not in data:
        raise DataError(f"{source}: split '{split}' is missing (keys: {', '.join(map(str, data))})")
    part = data[split]
    if not isinstance(part, Mapping):
        raise DataError(f"{source}: split '{split}' must be a dict of fields, got {type(part).__name__}")
    return part


def field(part: Mapping[str, Any], key: str, source: str | Path, split: str) -> Any:
    if key not in part:
        raise DataError(f"{source}: split '{split}' has no field '{key}' (fields: {', '.join(map(str, part))})")
    return part[key]


def stack_float32(container: Any, source: str | Path, split: str, key: str, copy: bool) -> np.ndarray:
    """float32 [N, L, D] from one stacked array or a list of per-sample [L, D] arrays (always a copy if `copy`)."""
    where = f"{source}: split '{split}', field '{key}'"
    if isinstance(container, torch.Tensor):
        container = container.numpy()
    if isinstance(container, np.ndarray):
        if container.ndim != 3 or container.dtype.kind not in "fiub":
            raise DataError(f"{where} must be a numeric array [N, L, D], got {container.dtype} {container.shape}")
        return np.array(container, dtype=np.float32, copy=True) if copy else np.asarray(container, dtype=np.float32)
    if not isinstance(container, (list, tuple)):
        raise DataError(f"{where} must be an array [N, L, D] or a list of [L, D] arrays, got {type(container).__name__}")
    if not container:
        return np.zeros((0, 1, 1), dtype=np.float32)
    items = [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in container]
    shape = items[0].shape
    if len(shape) != 2:
        raise DataError(f"{where}: sample 0 must be [L, D], got shape {shape}")
    out = np.empty((len(items), *shape), dtype=np.float32)
    for i, item in enumerate(items):
        if item.shape != shape or item.dtype.kind not in "fiub":
            raise DataError(f"{where}: sample {i} is {item.dtype} {item.shape}, sample 0 is {shape}")
        out[i] = item
    return out


def labels_from_targets(targets: Any, num_labels: int, source: str | Path, split: str) -> np.ndarray:
    """float32 [N, C] multi-hot from N label sequences [2, e..., 3]; id e sets label e - 4."""
    where = f"{source}: split '{split}', field 'tgt'"
    if not isinstance(targets, (list, tuple, np.ndarray)):
        raise DataError(f"{where} must be a list of label sequences, got {type(targets).__name__}")
    labels = np.zeros((len(targets), num_labels), dtype=np.float32)
    last = FIRST_EMOTION_ID + num_labels - 1
    for i, sequence in enumerate(targets):
        ids = np.asarray(sequence).tolist() if isinstance(sequence, (np.ndarray, torch.Tensor)) else sequence
        if not isinstance(ids, (list, tuple)) or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in ids):
            raise DataError(f"{where}: sample {i} must be a list of integer token ids, got {sequence!r}")
        ids = [int(e) for e in ids]
        if len(ids) < 2 or ids[0] != BOS or ids[-1] != EOS:
            raise DataError(f"{where}: sample {i} must start with <s>={BOS} and end with </s>={EOS}, got {list(ids)}")
        for e in ids[1:-1]:
            if not FIRST_EMOTION_ID <= e <= last:
                raise DataError(f"{where}: sample {i} has emotion id {e}, outside {FIRST_EMOTION_ID}..{last} ({num_labels} labels)")
            labels[i, e - FIRST_EMOTION_ID] = 1.0
    return labels


def label_names_from_vocab(data: Any, num_labels: int, default: Sequence[str]) -> tuple[str, ...]:
    """Names of ids 4..4+C-1 from the file's `dict['tgt']` ({name: id}); `default` when it does not name them all."""
    vocab = data.get("dict") if isinstance(data, Mapping) else None
    vocab = vocab.get("tgt") if isinstance(vocab, Mapping) else None
    if isinstance(vocab, Mapping):
        by_id = {int(i): str(name) for name, i in vocab.items() if isinstance(i, (int, np.integer))}
        names = [by_id.get(FIRST_EMOTION_ID + j) for j in range(num_labels)]
        if all(names) and len(set(names)) == num_labels:
            return tuple(str(n) for n in names)
    return tuple(default)


def sample_ids(part: Mapping[str, Any], n: int, split: str) -> list[str]:
    """The split's own ids ('id' or 'ids' field) when it has n unique ones, else '<split>-<index>'."""
    for key in ("id", "ids"):
        raw = part.get(key)
        if raw is None or isinstance(raw, (str, bytes)) or len(raw) != n:
            continue
        ids = [_id_text(x) for x in raw]
        if len(set(ids)) == n:
            return ids
    return [f"{split}-{i}" for i in range(n)]


def _id_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, np.ndarray)):
        return "_".join(_id_text(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value))
    return str(value)


# ------------------------------------------------------------------------------------------ masks, split


def padding_mask(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """bool [N, L]: step t is real when any of `arrays` ([N, L, D_m], same N and L) is non-zero there."""
    real = np.zeros(arrays[0].shape[:2], dtype=bool)
    for x in arrays:
        real |= (x != 0).any(axis=2)
    return torch.from_numpy(real)


def ones_mask(x: np.ndarray) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.bool)


def length_mask(lengths: Any, n: int, max_len: int, source: str | Path, split: str, key: str) -> torch.Tensor:
    """bool [N, L]: the first min(length, L) steps of each sample are real."""
    values = np.asarray(lengths)
    if values.shape != (n,) or values.dtype.kind not in "iu" or (values < 0).any():
        raise DataError(f"{source}: split '{split}', field '{key}' must hold {n} non-negative integer lengths")
    return torch.arange(max_len)[None, :] < torch.from_numpy(values.astype(np.int64))[:, None]


def replace_neg_inf(x: np.ndarray) -> None:
    """Set -inf to 0 in place (x is the reader's own float32 copy)."""
    x[np.isneginf(x)] = 0.0


def make_split(features: dict[str, np.ndarray], masks: dict[str, torch.Tensor], labels: np.ndarray, ids: list[str]) -> SplitData:
    """Single-speaker split: one clip per sample."""
    return SplitData(
        features={m: torch.from_numpy(x) for m, x in features.items()},
        masks=masks,
        labels=torch.from_numpy(labels),
        ids=ids,
        clip_index=torch.arange(len(labels)),
    )
