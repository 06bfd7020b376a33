"""Text-featurisation options shared by the dataset readers that featurise transcripts (mosei-text, meld)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mmer.featurize.cache import featurize_cached
from mmer.featurize.encoders import TextEncoding


@dataclass
class TextOptions:
    encoder: Literal["glove-50", "minilm"] = "glove-50"
    pooling: Literal["tokens", "mean", "cls"] | None = None  # None = the encoder's default
    max_len: int | None = None  # None = the encoder's default (glove-50: 60 words, minilm: 256 word pieces)
    oov: Literal["zero", "skip"] = "zero"  # glove-50: unknown words as zero vectors or dropped
    batch_size: int = 64  # minilm: texts per forward pass
    cache: bool = True  # keep featurised text in the cache folder (see docs/text.md)
    cache_dir: str | None = None  # None = $MMER_CACHE_DIR, else $XDG_CACHE_HOME/mmer, else ~/.cache/mmer

    def encoding(self) -> TextEncoding:
        return TextEncoding(self.encoder, self.pooling, self.max_len, self.oov, self.batch_size).resolved()

    def featurize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(features float32 [N, L, D], mask bool [N, L]) of `texts`, through the cache when enabled."""
        return featurize_cached(texts, self.encoding(), cache=self.cache, cache_dir=self.cache_dir)
