"""On-disk cache of featurised texts, so a dataset reader featurises its transcripts once per machine.

Location: `cache_dir` if given, else `$MMER_CACHE_DIR`, else `$XDG_CACHE_HOME/mmer`, else `~/.cache/mmer`; files
live in its `text/` folder, never next to the data (the data folder may be read-only and is not ours).
Key: SHA-256 of the encoding's `describe()` (encoder, pooling, max_len, oov, package version, rule version) and of
every text (length-prefixed, in order). Any change of input or options is a new file; a stale or corrupt entry is
never read as valid: it is recomputed and replaced. Delete the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from mmer.errors import DataError
from mmer.featurize.encoders import TextEncoding, featurize_texts
from mmer.featurize.files import read_text_features, write_text_features


def default_cache_dir() -> Path:
    if os.environ.get("MMER_CACHE_DIR"):
        return Path(os.environ["MMER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmer"


def cache_key(texts: list[str], encoding: TextEncoding) -> str:
    digest = hashlib.sha256(json.dumps(encoding.describe(), sort_keys=True).encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def featurize_cached(
    texts: list[str], encoding: TextEncoding, *, cache: bool = True, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`featurize_texts`, read from / written to the cache when `cache` is True."""
    if not cache:
        return featurize_texts(texts, encoding)
    key = cache_key(texts, encoding)
    path = Path(cache_dir or default_cache_dir()) / "text" / f"{key[:40]}.npz"
    if path.is_file():
        try:
            ids, feats, mask, meta = read_text_features(path)
            if meta.get("key") == key and len(ids) == len(texts):
                return feats, mask
        except DataError:
            pass  # corrupt or foreign file: recompute and replace it
    feats, mask = featurize_texts(texts, encoding)
    meta = {**encoding.describe(), "key": key}
    try:
        write_text_features(path, [str(i) for i in range(len(texts))], feats, mask, meta, overwrite=True)
    except OSError as exc:  # the cache only saves time; an unwritable cache folder must not stop the run
        warnings.warn(f"could not write the text-feature cache {path} ({exc}); features were not cached", stacklevel=2)
    return feats, mask
