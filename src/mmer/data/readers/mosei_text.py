"""`mosei-text`: real CMU-MOSEI emotion labels on the segments that have human transcripts, text only.

Input (`--root`, e.g. shared/data/cmu_mosei): `mosei_segments.csv` (columns video_id, start, end, split, sentiment,
happy, sad, anger, surprise, disgust, fear, text, ...), or, when that file is absent, the widely shared
`Data_Val_original_without_neg_time.csv` + `Data_Test_original_without_neg_time.csv` (columns video, start_time,
end_time, sentiment, happy, ..., fear, text, ASR). Every row with a non-empty `text` is a sample (6,533 here:
the official valid and test folds).

- Labels: the 6 emotions in the official order; an emotion is present iff its intensity (mean of 3 raters, 0..3)
  is > 0, the CMU-MultimodalSDK binarisation.
- Splits: the official folds cannot be used (train has no transcripts), so the segments are re-split *by video*
  (no video in two splits) with a fixed seed: the sorted video ids are permuted with `split_seed`, the first
  `test_fraction` of videos form test, the next `valid_fraction` valid, the rest train.
- Modalities: `text` featurised from the transcript (default GloVe 6B-50d word sequences of up to 60 words, the
  MOSEI convention); `visual` and `audio` are absent in every sample: features zeros [K, 1, 1], masks all False.
- Sample ids: `<video>_<end time>` ((video, end) identifies a segment in both input layouts).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmer.data.dataset import SPLITS, DatasetBundle, SplitData, spec_from_splits
from mmer.errors import ConfigError, DataError, text_file_errors
from mmer.featurize.options import TextOptions
from mmer.registry import DATASETS

LABELS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
MODALITIES = ("text", "visual", "audio")
SEGMENTS_FILE = "mosei_segments.csv"
TRANSCRIPT_FILES = ("Data_Val_original_without_neg_time.csv", "Data_Test_original_without_neg_time.csv")
_COLUMNS = {  # file layout -> (video, end) column names
    SEGMENTS_FILE: ("video_id", "end"),
    TRANSCRIPT_FILES[0]: ("video", "end_time"),
    TRANSCRIPT_FILES[1]: ("video", "end_time"),
}


@dataclass
class MoseiTextOptions(TextOptions):
    split_seed: int = 0  # seed of the by-video re-split
    valid_fraction: float = 0.1  # share of videos in valid
    test_fraction: float = 0.2  # share of videos in test


@dataclass
class Segments:
    """The transcribed segments of the input, in file order."""

    ids: list[str]
    videos: list[str]
    texts: list[str]
    labels: np.ndarray  # float32 [N, 6] multi-hot


def read_segments(root: Path) -> Segments:
    """Parse the segments with a transcript from `root` (mosei_segments.csv, else the Data_Val/Test CSVs)."""
    files = [root / SEGMENTS_FILE] if (root / SEGMENTS_FILE).is_file() else [root / f for f in TRANSCRIPT_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{root}: no {SEGMENTS_FILE}, and {' and '.join(missing)} missing; mosei-text needs {SEGMENTS_FILE} "
            f"or both {' and '.join(TRANSCRIPT_FILES)}"
        )
    ids, videos, texts, labels = [], [], [], []
    for path in files:
        video_col, end_col = _COLUMNS[path.name]
        with text_file_errors(path), path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            need = (video_col, end_col, "text", *LABELS)
            lacking = [c for c in need if c not in (reader.fieldnames or [])]
            if lacking:
                raise DataError(f"{path}: missing column(s) {', '.join(lacking)}")
            for row in reader:
                line = reader.line_num
                text = (row["text"] or "").strip()
                if not text:
                    continue
                ids.append(f"{row[video_col]}_{_number(row[end_col], path, line, end_col)!r}")
                videos.append(row[video_col])
                texts.append(text)
                labels.append([_intensity(row[name], path, line, name) > 0 for name in LABELS])
    if not ids:
        raise DataError(f"{', '.join(str(f) for f in files)}: no segment has a transcript in column 'text'")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{files[0].parent}: segment '{dup}' (video, end time) appears twice")
    return Segments(ids, videos, texts, np.asarray(labels, dtype=np.float32))


def _number(cell: str | None, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell or "")
    except ValueError:
        raise DataError(f"{path}: line {line}, column '{column}': {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}, column '{column}': {cell!r} is not finite")
    return value


def _intensity(cell: str | None, path: Path, line: int, column: str) -> float:
    value = _number(cell, path, line, column)
    if not 0.0 <= value <= 3.0:
        raise DataError(f"{path}: line {line}, column '{column}': emotion intensity {value} is outside 0..3")
    return value


def split_by_video(videos: list[str], seed: int, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Split name index (0 train, 1 valid, 2 test) per segment; every video lands in exactly one split."""
    if not (0 < valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise ConfigError(
            f"valid_fraction ({valid_fraction}) and test_fraction ({test_fraction}) must be positive and sum to less than 1"
        )
    unique, inverse = np.unique(np.asarray(videos), return_inverse=True)  # sorted ids: order-independent
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test, n_valid = round(test_fraction * len(unique)), round(valid_fraction * len(unique))
    if min(n_test, n_valid, len(unique) - n_test - n_valid) < 1:
        raise ConfigError(f"{len(unique)} videos are too few to split {valid_fraction}/{test_fraction} into three parts")
    split_of_video = np.zeros(len(unique), dtype=np.int64)
    split_of_video[order[:n_test]] = 2
    split_of_video[order[n_test : n_test + n_valid]] = 1
    return split_of_video[inverse]


@DATASETS.register(
    "mosei-text",
    options=MoseiTextOptions,
    summary="CMU-MOSEI emotion labels on the 6,533 transcribed segments; featurised text, audio/visual absent",
    needs_root=True,
)
def read_mosei_text(root: Path | None, options: MoseiTextOptions) -> DatasetBundle:
    if root is None:
        raise DataError("dataset 'mosei-text' needs --root: the folder with mosei_segments.csv (e.g. shared/data/cmu_mosei)")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    segments = read_segments(root)
    split_of = split_by_video(segments.videos, options.split_seed, options.valid_fraction, options.test_fraction)
    feats, mask = options.featurize(segments.texts)  # [N, L, D], [N, L]
    splits = {}
    for code, name in enumerate(SPLITS):
        rows = np.flatnonzero(split_of == code)
        k = len(rows)
        absent = {m: torch.zeros(k, 1, 1) for m in MODALITIES[1:]}
        splits[name] = SplitData(
            features={"text": torch.from_numpy(feats[rows]), **absent},
            masks={"text": torch.from_numpy(mask[rows]), **{m: torch.zeros(k, 1, dtype=torch.bool) for m in absent}},
            labels=torch.from_numpy(segments.labels[rows]),
            ids=[segments.ids[i] for i in rows],
            clip_index=torch.arange(k),
        )
    spec = spec_from_splits("mosei-text", LABELS, splits, MODALITIES)
    return DatasetBundle(spec, splits, source=str(root))
