"""`music-emotions`: the Mulan/MEKA "emotions" multi-label music data (Trohidis et al., ISMIR 2008), 593 songs.

Input (`--root`, e.g. shared/data/emotions_music): `music.csv`, a header row and one row per song. Columns named
`BH_*` / `BHSUM*` are the rhythm features (8: beat-histogram peaks and sums), columns named `Mean_Acc*` /
`Std_Acc*` the timbre features (64: means and standard deviations of spectral centroid, rolloff, flux and
MFCC 0-12), and every other column is a 0/1 label; label names and order are taken from the file
(amazed-suprised, happy-pleased, relaxing-clam, quiet-still, sad-lonely, angry-aggresive, with the original
spellings).

- Modalities: `rhythm` [N, 1, 8] and `timbre` [N, 1, 64], one song-level vector each (masks all True).
- Features are standardised per column with the mean and standard deviation of the training songs of the fold
  (a constant column is only centred).
- Splits: the file has no official split. `folds` seeded folds (scikit-learn KFold, shuffled with `seed`): fold
  `fold` is test, fold `fold + 1` (mod `folds`) is valid, the rest is train. With the defaults (5 folds) that is
  about 355 / 119 / 119 songs, and every song is tested exactly once over the 5 folds.
- Sample ids: `song<row>`, the 0-based data row of the file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import KFold

from mmer.data.dataset import SPLITS, DatasetBundle, SplitData, spec_from_splits
from mmer.errors import ConfigError, DataError, text_file_errors
from mmer.registry import DATASETS

FILE = "music.csv"
VIEWS = {"rhythm": ("BH_", "BHSUM"), "timbre": ("Mean_Acc", "Std_Acc")}  # modality -> column-name prefixes


@dataclass
class MusicOptions:
    folds: int = 5  # number of seeded folds
    fold: int = 0  # which fold is the test split (0-based); the next one is valid
    seed: int = 0  # shuffling seed of the folds


@dataclass
class MusicTable:
    label_names: list[str]
    labels: np.ndarray  # float32 [N, C]
    views: dict[str, np.ndarray]  # modality -> float32 [N, D_m], raw (not standardised)


def read_music(path: Path) -> MusicTable:
    """Parse music.csv: labels are the columns that belong to no feature view, in file order."""
    if not path.is_file():
        raise DataError(f"{path}: file does not exist (music-emotions needs {FILE} under --root)")
    with text_file_errors(path), path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        rows = list(reader)
    if not header or not rows:
        raise DataError(f"{path}: needs a header row and at least one song")
    view_cols = {m: [i for i, c in enumerate(header) if c.startswith(prefixes)] for m, prefixes in VIEWS.items()}
    for m, cols in view_cols.items():
        if not cols:
            raise DataError(f"{path}: no {m} columns (names starting with {' or '.join(VIEWS[m])})")
    feature_cols = {i for cols in view_cols.values() for i in cols}
    label_cols = [i for i in range(len(header)) if i not in feature_cols]
    if not label_cols:
        raise DataError(f"{path}: no label columns (every column is a feature)")
    values = np.empty((len(rows), len(header)), dtype=np.float64)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
        for i, cell in enumerate(row):
            try:
                values[line - 2, i] = float(cell)
            except ValueError:
                raise DataError(f"{path}: line {line}, column '{header[i]}': {cell!r} is not a number") from None
            if not math.isfinite(values[line - 2, i]):
                raise DataError(f"{path}: line {line}, column '{header[i]}': {cell!r} is not finite")
    labels = values[:, label_cols]
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: line {r + 2}, label column '{header[label_cols[c]]}' is {labels[r, c]:g}, not 0 or 1")
    return MusicTable(
        label_names=[header[i] for i in label_cols],
        labels=labels.astype(np.float32),
        views={m: values[:, cols].astype(np.float32) for m, cols in view_cols.items()},
    )


def fold_splits(n: int, folds: int, fold: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices of train/valid/test: test = fold `fold`, valid = fold `fold + 1`, train = the others."""
    if folds < 3:
        raise ConfigError(f"folds must be at least 3 (train, valid and test each need one), got {folds}")
    if not 0 <= fold < folds:
        raise ConfigError(f"fold must be in 0..{folds - 1}, got {fold}")
    if n < folds:
        raise ConfigError(f"{n} songs cannot be split into {folds} folds")
    parts = [test for _, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n))]
    test, valid = parts[fold], parts[(fold + 1) % folds]
    train = np.sort(np.concatenate([p for i, p in enumerate(parts) if i not in (fold, (fold + 1) % folds)]))
    return {"train": train, "valid": np.sort(valid), "test": np.sort(test)}


@DATASETS.register(
    "music-emotions",
    options=MusicOptions,
    summary="593 songs, 6 emotion labels; rhythm (8) and timbre (64) audio features as two modalities, seeded folds",
    needs_root=True,
)
def read_music_emotions(root: Path | None, options: MusicOptions) -> DatasetBundle:
    if root is None:
        raise DataError(f"dataset 'music-emotions' needs --root: the folder with {FILE} (e.g. shared/data/emotions_music)")
    path = root / FILE
    table = read_music(path)
    index = fold_splits(len(table.labels), options.folds, options.fold, options.seed)
    train = index["train"]
    stats = {}
    for m, x in table.views.items():
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        stats[m] = (mean, np.where(std > 0, std, 1.0).astype(np.float32))
    splits = {}
    for name in SPLITS:
        rows = index[name]
        feats = {m: torch.from_numpy(((x[rows] - stats[m][0]) / stats[m][1])[:, None, :].astype(np.float32)) for m, x in table.views.items()}
        splits[name] = SplitData(
            features=feats,  # modality -> [K, 1, D_m]
            masks={m: torch.ones(len(rows), 1, dtype=torch.bool) for m in feats},
            labels=torch.from_numpy(table.labels[rows]),
            ids=[f"song{i}" for i in rows],
            clip_index=torch.arange(len(rows)),
        )
    spec = spec_from_splits("music-emotions", table.label_names, splits, tuple(VIEWS))
    return DatasetBundle(spec, splits, source=str(path))
