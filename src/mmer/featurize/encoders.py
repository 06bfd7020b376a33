"""One entry point for turning texts into a text modality: `featurize_texts(texts, TextEncoding(...))`.

Encoders (each installs from the package registry with `pip install 'mmer[text]'`; nothing is fetched at run time):
- "glove-50": GloVe 6B-50d word vectors; pooling "tokens" (default, word-level sequence, max_len default 60 as in
  CMU-MOSEI) or "mean" (one vector per text).
- "minilm": all-MiniLM-L6-v2; pooling "mean" (default, the model's sentence embedding), "cls" or "tokens"
  (word-piece sequence, max_len default 256).
Loaded encoders are kept for the life of the process, so a second dataset or split pays no loading cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mmer.errors import ConfigError, unknown_name
from mmer.featurize.packages import require

ENCODERS = ("glove-50", "minilm")
POOLINGS = {"glove-50": ("tokens", "mean"), "minilm": ("mean", "cls", "tokens")}  # first = default
DEFAULT_MAX_LEN = {"glove-50": 60, "minilm": 256}
DIMS = {"glove-50": 50, "minilm": 384}
FORMAT_VERSION = 1  # bump when the featurisation rules change, so caches are not reused across versions


@dataclass(frozen=True)
class TextEncoding:
    """How to featurise text. `pooling`/`max_len` None = the encoder's default."""

    encoder: str = "glove-50"
    pooling: str | None = None
    max_len: int | None = None
    oov: str = "zero"  # glove-50 only: "zero" (keep unknown words as zero vectors) or "skip"
    batch_size: int = 64  # minilm only: texts per forward pass

    def resolved(self) -> TextEncoding:
        """Defaults filled in and every field checked; raises ConfigError naming the bad field."""
        if self.encoder not in ENCODERS:
            raise ConfigError(unknown_name("text encoder", self.encoder, ENCODERS))
        pooling = self.pooling or POOLINGS[self.encoder][0]
        if pooling not in POOLINGS[self.encoder]:
            raise ConfigError(
                f"pooling {pooling!r} is not available for encoder '{self.encoder}'; "
                f"valid: {', '.join(POOLINGS[self.encoder])}"
            )
        max_len = DEFAULT_MAX_LEN[self.encoder] if self.max_len is None else self.max_len
        if max_len < 1:
            raise ConfigError(f"max_len must be a positive number of tokens, got {max_len}")
        if self.oov not in ("zero", "skip"):
            raise ConfigError(f"oov must be 'zero' or 'skip', got {self.oov!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        return TextEncoding(self.encoder, pooling, max_len, self.oov, self.batch_size)

    @property
    def dim(self) -> int:
        return DIMS[self.encoder]

    def describe(self) -> dict[str, Any]:
        """Everything that determines the output: options, encoder package version and rule version."""
        enc = self.resolved()
        info: dict[str, Any] = asdict(enc)
        del info["batch_size"]  # batching does not change the values
        if enc.encoder != "glove-50":
            del info["oov"]
        info["package"], info["package_version"] = _package(enc.encoder)
        info["format_version"] = FORMAT_VERSION
        return info


def _package(encoder: str) -> tuple[str, str]:
    from mmer.featurize import glove, minilm

    package = glove.PACKAGE if encoder == "glove-50" else minilm.PACKAGE
    return package, require(package, encoder)


@lru_cache(maxsize=1)
def _glove() -> Any:
    from mmer.featurize.glove import GloveVectors

    return GloveVectors()


@lru_cache(maxsize=2)
def _minilm(max_len: int) -> Any:
    from mmer.featurize.minilm import MiniLM

    return MiniLM(max_len=max_len)


def featurize_texts(texts: list[str], encoding: TextEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (features float32 [N, L, D], mask bool [N, L]); empty texts have an all-False mask."""
    enc = encoding.resolved()
    assert enc.pooling is not None and enc.max_len is not None
    unique = list(dict.fromkeys(texts))  # repeated lines ("Okay.", "Yeah.") are encoded once
    if enc.encoder == "glove-50":
        from mmer.featurize.glove import encode_glove

        feats, mask = encode_glove(unique, _glove(), pooling=enc.pooling, max_len=enc.max_len, oov=enc.oov)
    else:
        feats, mask = _minilm(enc.max_len).encode(unique, pooling=enc.pooling, batch_size=enc.batch_size)
    if len(unique) == len(texts):
        return feats, mask
    row = {text: i for i, text in enumerate(unique)}
    index = np.array([row[t] for t in texts], dtype=np.int64)  # [N]
    return feats[index], mask[index]
