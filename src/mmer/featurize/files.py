"""Reading transcripts from CSV and writing/reading featurised text as a safe, reproducible npz file.

Output file (`mmer featurize text --out FILE`), read with `allow_pickle=False`:
    ids        str      [N]        row ids (the --id-column, else the 0-based row number)
    feat.text  float32  [N, L, D]  features
    mask.text  bool     [N, L]     True = real token; an empty transcript is all False
    meta       str      []         JSON: encoder, pooling, max_len, oov, package version, rule version, source
The zip entries carry a fixed timestamp, so featurising the same input twice gives a byte-identical file.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mmer.errors import DataError, did_you_mean, text_file_errors
from mmer.io import atomic_path

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # earliest zip timestamp; keeps files byte-identical across runs


def read_text_csv(path: str | Path, column: str, id_column: str | None = None) -> tuple[list[str], list[str]]:
    """(ids, texts) from a UTF-8 CSV with a header; empty cells are empty texts."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    with text_file_errors(path), path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for name, flag in ((column, "--column"), (id_column, "--id-column")):
            if name is not None and name not in header:
                raise DataError(
                    f"{path}: no column '{name}' ({flag}){did_you_mean(name, header)}; columns: {', '.join(header)}"
                )
        rows = [(reader.line_num, row) for row in reader]  # (file line, row)
    if not rows:
        raise DataError(f"{path}: has a header but no rows")
    texts = [row[column] or "" for _, row in rows]
    ids = [str(i) for i in range(len(rows))] if id_column is None else [row[id_column] or "" for _, row in rows]
    seen: set[str] = set()
    for (line, _), row_id in zip(rows, ids):
        if not row_id:
            raise DataError(f"{path}: line {line} has an empty id in column '{id_column}'")
        if row_id in seen:
            raise DataError(f"{path}: line {line} repeats the id '{row_id}' of column '{id_column}'")
        seen.add(row_id)
    return ids, texts


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], *, overwrite: bool, compress: bool = True) -> None:
    """Atomically write `arrays` as an .npz with fixed zip timestamps (byte-reproducible)."""
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path, overwrite=overwrite) as tmp, zipfile.ZipFile(tmp, "w", compression=compression) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_TIME)
            info.compress_type = compression
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)  # keeps 0-d arrays 0-d


def write_text_features(
    path: str | Path, ids: list[str], feats: np.ndarray, mask: np.ndarray, meta: dict[str, Any], *, overwrite: bool
) -> None:
    arrays = {
        "ids": np.array(ids, dtype=str),
        "feat.text": feats.astype(np.float32, copy=False),
        "mask.text": mask.astype(bool, copy=False),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    write_npz(path, arrays, overwrite=overwrite)


def read_text_features(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """(ids, feat [N, L, D], mask [N, L], meta) from a file written by `write_text_features`, checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: corrupt, truncated or unsafe npz file ({exc})") from None
    for key in ("ids", "feat.text", "mask.text", "meta"):
        if key not in arrays:
            raise DataError(f"{path}: missing array '{key}'")
    ids, feats, mask = arrays["ids"], arrays["feat.text"], arrays["mask.text"]
    if feats.dtype != np.float32 or feats.ndim != 3 or mask.dtype != bool or mask.shape != feats.shape[:2]:
        raise DataError(f"{path}: 'feat.text' must be float32 [N, L, D] and 'mask.text' bool [N, L]")
    if ids.shape != (feats.shape[0],):
        raise DataError(f"{path}: 'ids' has {ids.shape} entries for {feats.shape[0]} rows")
    try:
        if arrays["meta"].shape != () or arrays["meta"].dtype.kind != "U":
            raise ValueError("must be one string")
        meta = json.loads(arrays["meta"].item())
    except ValueError as exc:  # includes json.JSONDecodeError
        raise DataError(f"{path}: field 'meta' is not JSON ({exc})") from None
    return [str(i) for i in ids], feats, mask, meta
