"""M3ED (Chinese TV dialogues): one multi-label sample per dialogue, as CARAT's `utils/m3ed_reader.py` builds them.

Two on-disk forms are accepted and told apart by content:
- the DialogueRNN-format 10-tuple pickle of the M3ED feature release: index 2 = {dialogue: [utterance emotion
  0..6]}, 3 = {dialogue: text [n_utt, 768]}, 4 = {dialogue: [n_utt, 1024]}, 5 = {dialogue: [n_utt, 342]},
  7/8/9 = train/dev/test dialogue ids;
- `m3ed_data_60.pt`, the file CARAT's reader writes from it (the label-sequence layout of `label_sequences.py`, ids 4..10).
A dialogue's labels are the union of all its utterance emotions (also those past the cut); its feature sequences
keep the first `max_utterances` utterances. Index 4 (1024-d) is wav2vec *audio* and index 5 (342-d) DenseFace
*visual* in the DialogueRNN layout, although CARAT calls them visual and audio: `modality_names` picks which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mmer.data.dataset import SPLITS, DatasetBundle, spec_from_splits
from mmer.data.readers.label_sequences import MODALITIES, MaskMode, label_sequence_bundle, make_split, ones_mask
from mmer.data.safe_load import float32_arrays, load_data_file, require_file
from mmer.errors import DataError
from mmer.registry import DATASETS

M3ED_LABELS = ("Happy", "Neutral", "Sad", "Disgust", "Anger", "Fear", "Surprise")  # emotion ids 0..6
CONVERTED_FILE = "m3ed_data_60.pt"
RELEASE_PICKLES = (  # the feature pickles CARAT's reader names, the one it uses first
    "Asent_wav2vec_zh2chmed2e5last-Vsent_avg_affectdenseface-Lsent_cls_robert_wwm_base_chinese4chmed.pkl",
    "AIS10_norm-Vsent_avg_affectdenseface-Lsent_cls_robert_wwm_base_chinese4chmed.pkl",
    "Asent_avg_wav2vec_zh-Vsent_avg_affectdenseface-Lsent_avg_robert_base_wwm_chinese.pkl",
    "Asent_wav2vec_zh2chmed2e5last-Vsent_avg_affectdenseface-Lsent_avg_robert_base_wwm_chinese.pkl",
)
LABELS_INDEX, SPLIT_INDEX = 2, {"train": 7, "valid": 8, "test": 9}
# modality -> tuple index (dialogue pickle) and -> field (converted .pt), per naming
PICKLE_INDEX = {"correct": {"text": 3, "visual": 5, "audio": 4}, "carat": {"text": 3, "visual": 4, "audio": 5}}
CONVERTED_FIELDS = {
    "correct": {"text": "src-text", "visual": "src-audio", "audio": "src-visual"},
    "carat": {"text": "src-text", "visual": "src-visual", "audio": "src-audio"},
}


@dataclass
class M3EDOptions:
    file: str = ""  # under --root; empty = the first of the release pickles and m3ed_data_60.pt found there
    modality_names: Literal["correct", "carat"] = "correct"  # correct: 1024-d wav2vec = audio, 342-d DenseFace = visual
    masks: MaskMode = "real"  # real: utterances past the dialogue's end are padding; ones: CARAT's all-ones masks
    max_utterances: int = 60  # dialogue pickle: sequences keep the first this many utterances (CARAT: 60)


@DATASETS.register("m3ed", options=M3EDOptions, summary="M3ED dialogues (release pickle or CARAT's m3ed_data_60.pt), 7 emotions", needs_root=True)
def load_m3ed(root: Path | None, options: M3EDOptions | None) -> DatasetBundle:
    options = options or M3EDOptions()
    if options.max_utterances < 1:
        raise DataError(f"m3ed option 'max_utterances' must be at least 1, got {options.max_utterances}")
    path = require_file(root, options.file or _find_file(root), "m3ed", _HOLDS)
    data = load_data_file(path, float32_arrays)
    if isinstance(data, Mapping):
        fields = CONVERTED_FIELDS[options.modality_names]
        return label_sequence_bundle(data, str(path), "m3ed", M3ED_LABELS, fields, options.masks, owned=True, lengths_field="len_list")
    if isinstance(data, (tuple, list)) and len(data) == 10:
        return _dialogue_bundle(data, path, options)
    raise DataError(f"{path}: expected M3ED's 10-tuple feature pickle or CARAT's converted dict, got {type(data).__name__}")


_HOLDS = f"one of {', '.join(RELEASE_PICKLES[:1])} (or the other M3ED release pickles) or {CONVERTED_FILE}"


def _find_file(root: Path | None) -> str:
    for name in (*RELEASE_PICKLES, CONVERTED_FILE):
        if root is not None and (root / name).is_file():
            return name
    return RELEASE_PICKLES[0]  # require_file reports it missing


def _dialogue_bundle(data: tuple[Any, ...] | list[Any], path: Path, options: M3EDOptions) -> DatasetBundle:
    labels_by_dialogue = _mapping(data, LABELS_INDEX, path, "utterance labels")
    indices = PICKLE_INDEX[options.modality_names]
    tables = {m: _mapping(data, i, path, f"{m} features") for m, i in indices.items()}
    splits = {}
    for split in SPLITS:
        dialogues = data[SPLIT_INDEX[split]]
        if not isinstance(dialogues, (list, tuple, set, np.ndarray)):
            raise DataError(f"{path}: tuple index {SPLIT_INDEX[split]} ({split} dialogue ids) must be a list, got {type(dialogues).__name__}")
        dialogues = list(dialogues)
        labels = np.zeros((len(dialogues), len(M3ED_LABELS)), dtype=np.float32)
        lengths = np.zeros(len(dialogues), dtype=np.int64)
        features: dict[str, np.ndarray] = {}
        for k, dialogue in enumerate(dialogues):
            emotions = _utterance_labels(labels_by_dialogue, dialogue, path)
            labels[k, emotions] = 1.0  # union over every utterance, also those past the cut
            lengths[k] = min(len(emotions), options.max_utterances)
            for m, table in tables.items():
                rows = _utterance_features(table, dialogue, len(emotions), path, f"tuple index {indices[m]} ({m})")
                if m not in features:
                    features[m] = np.zeros((len(dialogues), options.max_utterances, rows.shape[1]), dtype=np.float32)
                if rows.shape[1] != features[m].shape[2]:
                    raise DataError(f"{path}: tuple index {indices[m]} ({m}): dialogue '{dialogue}' has {rows.shape[1]}-d features, others {features[m].shape[2]}-d")
                features[m][k, : lengths[k]] = rows[: lengths[k]]
        if not dialogues:
            features = {m: np.zeros((0, options.max_utterances, 1), dtype=np.float32) for m in tables}
        ordered = {m: features[m] for m in MODALITIES}
        if options.masks == "ones":
            masks = {m: ones_mask(x) for m, x in ordered.items()}
        else:
            real = torch.arange(options.max_utterances)[None, :] < torch.from_numpy(lengths)[:, None]
            masks = {m: real.clone() for m in ordered}
        splits[split] = make_split(ordered, masks, labels, [str(d) for d in dialogues])
    return DatasetBundle(spec_from_splits("m3ed", M3ED_LABELS, splits, MODALITIES), splits, str(path))


def _mapping(data: tuple[Any, ...] | list[Any], index: int, path: Path, what: str) -> Mapping[Any, Any]:
    table = data[index]
    if not isinstance(table, Mapping):
        raise DataError(f"{path}: tuple index {index} ({what}) must be a dict keyed by dialogue id, got {type(table).__name__}")
    return table


def _utterance_labels(table: Mapping[Any, Any], dialogue: Any, path: Path) -> list[int]:
    if dialogue not in table:
        raise DataError(f"{path}: tuple index {LABELS_INDEX} (utterance labels) has no dialogue '{dialogue}'")
    values = np.asarray(table[dialogue]).reshape(-1)
    if values.dtype.kind not in "iu" or len(values) == 0:
        raise DataError(f"{path}: tuple index {LABELS_INDEX}: dialogue '{dialogue}' must list one integer emotion per utterance")
    bad = values[(values < 0) | (values >= len(M3ED_LABELS))]
    if len(bad):
        raise DataError(f"{path}: tuple index {LABELS_INDEX}: dialogue '{dialogue}' has emotion id {bad[0]}, outside 0..{len(M3ED_LABELS) - 1}")
    return [int(v) for v in values]


def _utterance_features(table: Mapping[Any, Any], dialogue: Any, n_utterances: int, path: Path, where: str) -> np.ndarray:
    if dialogue not in table:
        raise DataError(f"{path}: {where} has no dialogue '{dialogue}'")
    rows = table[dialogue]
    rows = rows.numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] != n_utterances or rows.dtype.kind not in "fiu":
        raise DataError(
            f"{path}: {where}: dialogue '{dialogue}' must be a numeric [{n_utterances} utterances, D] array, "
            f"got {rows.dtype} {rows.shape}"
        )
    return rows
