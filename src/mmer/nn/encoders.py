"""BERT-style transformer encoders (the uni-modal extractors of CARAT, RAMer and TAILOR, and TAILOR's cross-modal
encoders), plus the CTC pseudo-alignment used for unaligned sequences.

All three official codes use the same post-LN BERT encoder (carat ref §2.3, ramer ref §2.2, tailor ref §2.2):

    E   = Dropout(LN(Linear(x) + P[0..L-1] (+ T[type_ids])))                      embedding, LN eps 1e-12
    A   = LN(E + Dropout(Dense(MHA(E, key mask (1 - mask) * -10000, attention dropout))))
    out = LN(A + Dropout(Linear(GELU_erf(Linear(A)))))                            FFN, intermediate size I

The official intermediate size is I = d = 256 (not 4d); dropouts 0.3; 8 heads. The official tanh pooler on the
first token is computed and never used, so it is not built here. `TransformerConfig.input_dim=None` gives the
cross-modal "CME" variant of TAILOR (no input projection; positions + 2 type ids, tailor ref §2.4).

Masks are bool [B, L], True = real token. Padding keys get additive -10000 before the softmax, so a sequence with
at least one real token gives padding exactly zero weight, and a sequence with none (a missing modality) gives a
finite uniform average instead of NaN. Outputs at padded positions are whatever the layers compute there; consumers
must pool with the mask (label-wise attention and the losses in this package do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.errors import ConfigError
from mmer.nn.dropout import FastDropout, keep_mask, keep_scale
from mmer.nn.masking import additive_key_mask, check_mask

LAYER_NORM_EPS = 1e-12  # the official TF-style LayerNorm epsilon (inside the square root, as nn.LayerNorm)
_ATTENTION_CHUNK_ELEMENTS = 1 << 22  # attention probabilities materialised at once in training (16 MiB float32)


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of one BERT-style encoder. Defaults are the official MOSEI values except `num_layers`."""

    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 8
    intermediate_size: int = 256  # official codes: = hidden_size (BERT would use 4 * hidden_size)
    dropout: float = 0.3  # embeddings and both sub-layer outputs
    attention_dropout: float = 0.3  # on the attention probabilities
    max_positions: int = 512  # rows of the learned absolute position table
    type_vocab_size: int = 0  # token-type (modality) embeddings; 0 = none. TAILOR's CME uses 2
    input_dim: int | None = None  # raw feature size F_in; None = no input projection (inputs already hidden_size)
    input_norm: bool = False  # LayerNorm(F_in, eps 1e-12) over the raw features before the projection
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"transformer hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        if self.input_norm and self.input_dim is None:
            raise ConfigError("transformer input_norm=True needs input_dim (the raw feature size to normalise)")
        for name, least in (("num_layers", 0), ("max_positions", 1), ("intermediate_size", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"transformer {name} must be >= {least}, got {getattr(self, name)}")


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT initialisation: Linear/Embedding weights N(0, std), Linear biases 0, LayerNorm weight 1 and bias 0.

    Use as `encoder.apply(partial(init_bert_weights, std=...))`; only these three module types are touched.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class InputEmbedding(nn.Module):
    """x [B, L, F_in] -> Dropout(LN(Linear(x) + position[0..L-1] (+ type[type_ids]))) [B, L, d]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.projection = nn.Linear(cfg.input_dim, d) if cfg.input_dim is not None else None
        self.position = nn.Embedding(cfg.max_positions, d)
        self.token_type = nn.Embedding(cfg.type_vocab_size, d) if cfg.type_vocab_size > 0 else None
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = FastDropout(cfg.dropout)
        self.hidden_size = d

    def forward(self, x: Tensor, type_ids: Tensor | None = None, position_ids: Tensor | None = None) -> Tensor:
        length = x.shape[1]
        if position_ids is not None:  # e.g. multi-party tokens positioned by their segment (RAMer)
            if position_ids.shape != x.shape[:2] or bool(((position_ids < 0) | (position_ids >= self.position.num_embeddings)).any()):
                raise ValueError(f"position_ids must be [B, L] = {tuple(x.shape[:2])} below max_positions={self.position.num_embeddings}")
        elif length > self.position.num_embeddings:
            raise ConfigError(
                f"transformer input has {length} tokens but max_positions={self.position.num_embeddings}; "
                "raise max_positions to at least the longest sequence"
            )
        if self.projection is not None:
            h = self.projection(x)  # [B, L, d]
        elif x.shape[-1] != self.hidden_size:
            raise ValueError(f"encoder without input projection needs {self.hidden_size}-dim inputs, got {x.shape[-1]}")
        else:
            h = x
        h = h + (self.position.weight[:length] if position_ids is None else self.position(position_ids))  # [B, L, d]
        if self.token_type is not None:
            ids = type_ids if type_ids is not None else torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            h = h + self.token_type(ids)
        elif type_ids is not None:
            raise ValueError("type_ids given but the encoder has type_vocab_size=0")
        return self.dropout(self.norm(h))


class _DropoutAttention(torch.autograd.Function):
    """out = Dropout_p(softmax(q k^T / sqrt(dh) + bias)) v, keeping for the backward pass only q, k, v, the output,
    the rows' log-sum-exp and the dropout mask as bytes; the probabilities are recomputed there.

    With dropout, PyTorch's CPU attention falls back to its math path, whose graph keeps about five
    probability-sized float tensors per layer (~35 MB per layer at batch 64 x 8 heads x 60 x 60); this keeps ~2 MB.
    Both passes run over chunks of samples, so the probability-sized temporaries stay below ~16 MB each (TAILOR's
    240-token cross-modal encoder would otherwise need ~120 MB per temporary). The mask is `nn.dropout.keep_mask`.

    The passes over probability-sized tensors are what costs on CPU, so there are as few as possible: the scale is
    folded into q, the softmax normaliser and the dropout scale are applied to the [Lq, dh] outputs instead of the
    [Lq, Lk] probabilities, and the backward pass uses FlashAttention's identity
    sum_j dP_ij P_ij = dO_i . O_i (dropout included), so it never forms dP * P.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, p: float) -> Tensor:  # type: ignore[override]
        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        chunk = max(1, _ATTENTION_CHUNK_ELEMENTS // (h * lq * lk))  # samples per chunk
        q = (q * q.shape[-1] ** -0.5).contiguous()  # [B, h, Lq, dh], scaled once: S = q k^T
        k, v = k.contiguous(), v.contiguous()  # used twice in backward: one copy, not one per matmul
        bias = bias.expand(b, *bias.shape[1:])
        keep = keep_mask((b, h, lq, lk), p, q.device)  # uint8 0/1
        # the output lives in the callers' merged-heads layout [B, Lq, h, dh], so their transpose + reshape is a
        # view and the output projection's saved input shares this storage instead of a second copy of it
        out = q.new_empty(b, lq, h, v.shape[-1]).transpose(1, 2)  # [B, h, Lq, dh]
        log_norm = q.new_empty(b, h, lq, 1)
        for rows in (slice(s, s + chunk) for s in range(0, b, chunk)):
            weights = torch.matmul(q[rows], k[rows].transpose(-1, -2)).add_(bias[rows])  # scores [c, h, Lq, Lk]
            top = weights.amax(dim=-1, keepdim=True)
            weights.sub_(top).exp_()  # unnormalised probabilities
            total = weights.sum(dim=-1, keepdim=True)  # [c, h, Lq, 1]
            out[rows] = torch.matmul(weights.mul_(keep[rows]), v[rows]).div_(total)
            log_norm[rows] = total.log_().add_(top)
        out.mul_(keep_scale(p))
        ctx.save_for_backward(q, k, v, bias, log_norm, keep, out)
        ctx.p, ctx.chunk = p, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, bias, log_norm, keep, out = ctx.saved_tensors  # q is scaled
        row_dot = (grad_out * out).sum(dim=-1, keepdim=True)  # sum_j dP_ij P_ij = dO_i . O_i  [B, h, Lq, 1]
        grad_out = grad_out * keep_scale(ctx.p)  # the dropout scale, on [B, h, Lq, dh] rather than on dP
        grad_q, grad_k, grad_v = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
        for rows in (slice(s, s + ctx.chunk) for s in range(0, q.shape[0], ctx.chunk)):
            probs = torch.matmul(q[rows], k[rows].transpose(-1, -2)).add_(bias[rows]).sub_(log_norm[rows]).exp_()
            kept = keep[rows].to(probs.dtype)  # one conversion, used twice
            torch.matmul((probs * kept).transpose(-1, -2), grad_out[rows], out=grad_v[rows])
            # softmax backward: dS = P * (dP - sum_j dP_j P_j) with dP = dropout'(dO v^T)
            grad_scores = torch.matmul(grad_out[rows], v[rows].transpose(-1, -2)).mul_(kept).sub_(row_dot[rows]).mul_(probs)
            torch.matmul(grad_scores, k[rows], out=grad_q[rows])
            torch.matmul(grad_scores.transpose(-1, -2), q[rows], out=grad_k[rows])
        return grad_q.mul_(q.shape[-1] ** -0.5), grad_k, grad_v, None, None


def dropout_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, p: float) -> Tensor:
    """Attention of q [B, h, Lq, dh] over k, v [B, h, Lk, dh] with additive `bias` (broadcast to [B, h, Lq, Lk])
    and dropout `p` on the probabilities — the same function as F.scaled_dot_product_attention(q, k, v, bias,
    dropout_p=p), with far less saved for the backward pass (see `_DropoutAttention`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout_attention needs 0 < p < 1, got {p}")
    return _DropoutAttention.apply(q, k, v, bias, p)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention (BERT self-attention without its output block).

    query [B, Lq, d] attends to `context` [B, Lk, d] (self-attention when context is None) with the additive key
    mask (1 - key_mask) * -10000; dropout on the attention probabilities in training. Returns [B, Lq, d].
    """

    def __init__(self, hidden_size: int, num_heads: int, attention_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attention_dropout = attention_dropout

    def _heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)  # [B, h, L, dh]

    def forward(self, query: Tensor, key_mask: Tensor, context: Tensor | None = None) -> Tensor:
        context = query if context is None else context
        q, k, v = self._heads(self.query(query)), self._heads(self.key(context)), self._heads(self.value(context))
        bias = additive_key_mask(key_mask, q.dtype)  # [B, 1, 1, Lk]
        if self.training and self.attention_dropout > 0:
            out = dropout_attention(q, k, v, bias, self.attention_dropout)  # [B, h, Lq, dh]
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(query.shape)  # [B, Lq, d]


class AttentionBlock(nn.Module):
    """LN(x + Dropout(Dense(MHA(x, context)))) — BERT's attention sub-layer (post-LN).

    With `context` it is a cross-attention sub-layer (TAILOR's label-to-modality attention uses this form).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attention = MultiHeadAttention(cfg.hidden_size, cfg.num_heads, cfg.attention_dropout)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = FastDropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor, key_mask: Tensor, context: Tensor | None = None) -> Tensor:
        return self.norm(x + self.dropout(self.dense(self.attention(x, key_mask, context))))  # [B, L, d]


class FeedForward(nn.Module):
    """LN(x + Dropout(Linear(GELU(Linear(x))))) with exact (erf) GELU — BERT's FFN sub-layer (post-LN)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.expand = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.contract = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.dropout = FastDropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(self.contract(F.gelu(self.expand(x)))))  # [B, L, d]


class EncoderLayer(nn.Module):
    """One post-LN BERT layer: self-attention sub-layer, then FFN sub-layer."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attention = AttentionBlock(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.ffn(self.attention(x, mask))  # [B, L, d]


class TransformerEncoder(nn.Module):
    """Optional input LN -> InputEmbedding -> `num_layers` EncoderLayers; returns the last hidden states.

    forward(x [B, L, F_in], mask bool [B, L], type_ids long [B, L] | None, position_ids long [B, L] | None) -> [B, L, d]
    (position_ids default to 0..L-1).
    Initialised as BERT (N(0, initializer_range), zero biases, LN 1/0), as the official extractors are.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.input_norm = nn.LayerNorm(cfg.input_dim, eps=LAYER_NORM_EPS) if cfg.input_norm else None
        self.embedding = InputEmbedding(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.apply(lambda m: init_bert_weights(m, cfg.initializer_range))

    def forward(self, x: Tensor, mask: Tensor, type_ids: Tensor | None = None, position_ids: Tensor | None = None) -> Tensor:
        check_mask(mask, x)
        if self.input_norm is not None:
            x = self.input_norm(x.float())  # the official codes cast raw (possibly float64) features first
        h = self.embedding(x, type_ids, position_ids)  # [B, L, d]
        for layer in self.layers:
            h = layer(h, mask)
        return h


def concat_segments(parts: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Join (features [B, L_i, d], mask [B, L_i]) along time for a cross-modal encoder (TAILOR's CME).

    Returns (x [B, ΣL_i, d], mask [B, ΣL_i], type_ids [B, ΣL_i]) where type id i marks the tokens of part i
    (TAILOR uses two parts per CME: ids 0 and 1). Position ids restart at 0 in the encoder, as in the code.
    """
    xs = torch.cat([x for x, _ in parts], dim=1)
    masks = torch.cat([m for _, m in parts], dim=1)
    ids = torch.cat(
        [torch.full(m.shape, i, dtype=torch.long, device=m.device) for i, (_, m) in enumerate(parts)], dim=1
    )
    return xs, masks, ids


class CTCAlignment(NamedTuple):
    aligned: Tensor  # [B, S, F] the input re-weighted onto S output slots
    mask: Tensor  # bool [B, S]: True where the sample had at least one real input frame
    logits: Tensor  # [B, T, S + 1] raw LSTM outputs (blank = channel 0), for a CTC loss if wanted


class CTCAligner(nn.Module):
    """CTC-style pseudo-alignment of a [B, T, F] sequence onto S slots (carat ref §2.2, tailor ref §2.9).

    A 2-layer LSTM maps every frame to S + 1 scores; softmax over them; the blank (channel 0) is dropped; the
    output is P'^T x, i.e. slot s is a weighted sum of the frames. Padded frames (mask False) get zero weight here
    (the official code has no padding, so this only matters for our masked data). No CTC loss is applied; TAILOR's
    code adds one on `logits` (targets 1..S, blank 0).
    """

    def __init__(self, input_dim: int, out_len: int):
        super().__init__()
        self.out_len = out_len
        self.lstm = nn.LSTM(input_dim, out_len + 1, num_layers=2, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> CTCAlignment:
        logits, _ = self.lstm(x)  # [B, T, S + 1]
        weights = torch.softmax(logits, dim=-1)[..., 1:]  # [B, T, S], blank dropped
        if mask is not None:
            check_mask(mask, x)
            weights = weights * mask.unsqueeze(-1).to(weights.dtype)
            present = mask.any(dim=1)  # [B]
        else:
            present = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        aligned = torch.bmm(weights.transpose(1, 2), x)  # [B, S, F]
        out_mask = present.unsqueeze(1).expand(-1, self.out_len)  # [B, S]
        return CTCAlignment(aligned, out_mask, logits)

