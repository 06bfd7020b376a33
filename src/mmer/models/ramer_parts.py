"""RAMer's auxiliary uni-modal embedding for multi-party clips (paper §4.1): roles, and inter-/intra-person attention.

A multi-party batch puts every modality on one token grid (token t = person `party.person[b, t]` in segment
`party.segment[b, t]`). RAMer's paper concatenates the personality embedding with each modality and applies
scaled dot-product attention across the persons of a segment (inter-person), then across the segments of a person
(intra-person), as AMER (Shen et al., 2020) does. Here that runs on the dense (person, segment) grid of
`mmer.nn.party`, for all samples and modalities at once (no loop over samples, persons or segments):

    X    = [H^m ; H^p]                                   [B, M, P, S, 2d]   (H^m = 0 where modality m is missing)
    Y_s  = X_s + Attn(X_s, X_s, X_s; keys of segment s)                    inter-person, per segment s
    Z_p  = Y_p + Attn(Y_p, Y_p, Y_p; keys of person p)                     intra-person, per person p
    out  = Linear(2d -> d)(Z)

Attn(q, k, v) = softmax(q k^T / tau) v with tau = sqrt(2d) and no learned projections (AMER's plain scaled
dot-product attention). Keys are the cells that exist *and* have modality m, so a missing modality never receives
attention; a missing token still queries (with its personality half) and is filled from the persons and segments
that have the modality — how a listener's absent text and audio are complemented. A query with no key keeps its
residual. Without personality the input is H^m alone (d wide, tau = sqrt(d)) and there is no projection.

Roles tell the encoders (as token types) and label-wise attention (as a learned score bias) where each token is
relative to the prediction target: same person or not x same segment, the one before, the one after, or further.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.data.batch import Batch, PartyStructure
from mmer.data.dataset import DataSpec
from mmer.nn.encoders import CTCAligner, TransformerConfig, TransformerEncoder
from mmer.nn.label_attention import LabelWiseAttention
from mmer.nn.masking import masked_softmax
from mmer.nn.party import from_grid, grid_size, to_grid

if TYPE_CHECKING:
    from mmer.models.ramer import RAMerConfig

NUM_ROLES = 8
TARGET_ROLE = 4


def target_roles(party: PartyStructure) -> Tensor:
    """long [B, T]: each token's relation to the (nearest) prediction target; 0 on padding.

    role = 4 * (same person as the target) + offset bucket of its segment relative to the target's
    (0: same segment, 1: the segment before, 2: the segment after, 3: further away). The target token is
    TARGET_ROLE = 4. With several targets (clip-level samples) the nearest one counts (fewest segments away, the
    same person first).
    """
    target = party.target  # [B, T']
    delta = party.segment[:, :, None] - party.segment[:, None, :]  # [B, T, T'] token segment - target segment
    same_person = party.person[:, :, None] == party.person[:, None, :]  # [B, T, T']
    distance = 2 * delta.abs() + (~same_person).long()
    distance = distance.masked_fill(~target[:, None, :], torch.iinfo(torch.long).max)
    nearest = distance.argmin(dim=2, keepdim=True)  # [B, T, 1]
    offset = delta.gather(2, nearest).squeeze(2)  # [B, T]
    person = same_person.gather(2, nearest).squeeze(2).long()
    bucket = torch.where(offset == 0, 0, torch.where(offset == -1, 1, torch.where(offset == 1, 2, 3)))
    return (4 * person + bucket) * party.valid.long()


def _attend(x: Tensor, keys: Tensor, tau: float) -> Tensor:
    """Residual scaled dot-product self-attention along dim -2: x [..., N, D], keys bool [..., N] -> [..., N, D]."""
    scores = x @ x.transpose(-1, -2) / tau  # [..., N, N]
    weights = masked_softmax(scores, keys.unsqueeze(-2), dim=-1)  # zero rows where no key exists
    return x + weights @ x


class PersonAttention(nn.Module):
    """Inter- then intra-person attention on the token grid; see the module docstring.

    forward(hidden [B, M, T, d], has_modality bool [B, M, T], party, personality [B, T, d] | None) -> [B, M, T, d]
    (padding tokens are not meaningful). With `attend=False` only the personality concatenation and projection run
    (the "without person attention" ablation).
    """

    def __init__(self, hidden_size: int, with_personality: bool, attend: bool = True):
        super().__init__()
        width = 2 * hidden_size if with_personality else hidden_size
        self.tau = math.sqrt(width)
        self.attend = attend
        self.project = nn.Linear(width, hidden_size) if with_personality else None

    def forward(self, hidden: Tensor, has_modality: Tensor, party: PartyStructure, personality: Tensor | None) -> Tensor:
        b, m, t, d = hidden.shape
        x = hidden * has_modality.unsqueeze(-1).to(hidden.dtype)  # a missing modality contributes nothing
        if (personality is None) != (self.project is None):
            raise ValueError(f"PersonAttention built {'with' if self.project is not None else 'without'} personality got the opposite")
        if personality is not None:
            x = torch.cat([x, personality.unsqueeze(1).expand(b, m, t, personality.shape[-1])], dim=-1)
        if not self.attend:
            return self.project(x) if self.project is not None else x
        width = x.shape[-1]
        persons, segments = grid_size(party)
        flat_party = PartyStructure(*(f.repeat_interleave(m, dim=0) for f in (party.person, party.segment, party.target)))
        grid, _ = to_grid(x.reshape(b * m, t, width), flat_party, persons, segments)  # [BM, P, S, w]
        keys, _ = to_grid(has_modality.reshape(b * m, t, 1).to(x.dtype), flat_party, persons, segments)
        keys = keys.squeeze(-1) > 0.5  # [BM, P, S]
        inter = _attend(grid.transpose(1, 2), keys.transpose(1, 2), self.tau).transpose(1, 2)  # across persons
        intra = _attend(inter, keys, self.tau)  # across segments, [BM, P, S, w]
        out = from_grid(intra, flat_party).view(b, m, t, width)  # [B, M, T, w]
        return self.project(out) if self.project is not None else out


class AuxiliaryEmbedding(nn.Module):
    """Paper §4.1 up to X_alpha: encoders, personality, person attention, roles, label-wise attention.

    forward(batch) -> (x_alpha [B, M, C, d], present bool [B, M]); modality order = `modalities`. `present[b, m]`
    says sample b has at least one real token of modality m; absent modalities get x_alpha = 0.
    """

    def __init__(self, cfg: RAMerConfig, spec: DataSpec):
        super().__init__()
        self.modalities = spec.modality_names
        d = cfg.hidden_size
        self.use_roles = spec.multi_party and cfg.target_roles
        self.segment_positions = spec.multi_party and cfg.party_positions == "segment"
        roles = NUM_ROLES if self.use_roles else 0  # role embeddings as the encoders' token types

        def encoder(input_dim: int, layers: int, max_len: int) -> TransformerEncoder:
            return TransformerEncoder(
                TransformerConfig(
                    hidden_size=d, num_layers=layers, num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                    dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, max_positions=max(max_len, 1),
                    type_vocab_size=roles, input_dim=input_dim, input_norm=cfg.input_norm,
                )
            )  # fmt: skip

        first_len = spec.modalities[0].max_len
        self.aligners = (
            nn.ModuleDict({m.name: CTCAligner(m.dim, first_len) for m in spec.modalities[1:]})
            if cfg.ctc_align and not spec.multi_party
            else None
        )
        self.encoders = nn.ModuleDict(
            {
                m.name: encoder(m.dim, cfg.layers[i] if cfg.layers else cfg.num_layers, first_len if self.aligners else m.max_len)
                for i, m in enumerate(spec.modalities)
            }
        )
        self.personality_mode = cfg.personality if spec.personality_dim > 0 and spec.multi_party else "none"
        self.personality = (
            encoder(spec.personality_dim, cfg.personality_layers, first_len) if self.personality_mode != "none" else None
        )
        self.person_attention = (
            PersonAttention(d, self.personality_mode == "paper", attend=cfg.person_attention)
            if spec.multi_party and (cfg.person_attention or self.personality_mode == "paper")
            else None
        )
        # role bias of label-wise attention, per (modality, label, role); starts out preferring the target token
        self.role_bias = None
        if self.use_roles:
            start = torch.zeros(len(self.modalities), spec.num_labels, NUM_ROLES)
            start[..., TARGET_ROLE] = cfg.target_bias
            self.role_bias = nn.Parameter(start)
        self.label_attention = nn.ModuleDict({m: LabelWiseAttention(d, spec.num_labels) for m in self.modalities})

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        features, masks = self._inputs(batch)
        party = batch.party
        roles = target_roles(party) if party is not None and self.use_roles else None  # [B, T]
        positions = party.segment.clamp(min=0) if party is not None and self.segment_positions else None  # [B, T]
        hidden = {m: self.encoders[m](features[m], masks[m], roles, positions) for m in self.modalities}  # [B, L_m, d]
        present = torch.stack([masks[m].any(dim=1) for m in self.modalities], dim=1)  # [B, M]
        if party is None:
            x_alpha = torch.stack([self.label_attention[m](hidden[m], masks[m]) for m in self.modalities], dim=1)
            return x_alpha * present[:, :, None, None].to(x_alpha.dtype), present
        tokens = torch.stack([hidden[m] for m in self.modalities], dim=1)  # [B, M, T, d]
        has = torch.stack([masks[m] for m in self.modalities], dim=1)  # [B, M, T]
        b, n_mod, t, d = tokens.shape
        personality = None
        if self.personality is not None:
            if batch.personality is None:
                raise ValueError("this RAMer model was built for data with personality, but the batch has none")
            personality = self.personality(batch.personality, party.valid, roles, positions)  # [B, T, d]
        keys = has
        if self.person_attention is not None:
            tokens = self.person_attention(tokens, has, party, personality if self.personality_mode == "paper" else None)
            keys = party.valid.unsqueeze(1).expand(b, n_mod, t)  # complemented tokens are all readable
        if self.personality_mode == "code":  # (P): personality tokens appended along the sequence axis
            assert personality is not None
            tokens = torch.cat([tokens, personality.unsqueeze(1).expand(b, n_mod, t, d)], dim=2)  # [B, M, 2T, d]
            keys = torch.cat([keys, party.valid.unsqueeze(1).expand(b, n_mod, t)], dim=2)
            roles = None if roles is None else torch.cat([roles, roles], dim=1)
        bias = None
        if roles is not None:
            assert self.role_bias is not None
            # a one-hot product, not `role_bias[:, :, roles]`: that indexing's backward (index_put_ with
            # accumulation) sums in a thread-dependent order on CPU, so 2-thread training did not repeat exactly
            one_hot = F.one_hot(roles, NUM_ROLES).to(self.role_bias.dtype)  # [B, T', R]
            bias = torch.einsum("mcr,btr->bmct", self.role_bias, one_hot)  # [B, M, C, T']
        x_alpha = torch.stack(
            [self.label_attention[m](tokens[:, i], keys[:, i], None if bias is None else bias[:, i]) for i, m in enumerate(self.modalities)],
            dim=1,
        )
        return x_alpha * present[:, :, None, None].to(x_alpha.dtype), present  # [B, M, C, d], [B, M]

    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        missing = [m for m in self.modalities if m not in batch.features]
        if missing:
            raise ValueError(f"batch lacks modalities {missing} that this RAMer model was built for")
        features = {m: batch.features[m] for m in self.modalities}
        masks = {m: batch.masks[m] for m in self.modalities}
        if self.aligners is not None:  # CTC pseudo-alignment of the other modalities onto the first one's length
            for m, aligner in self.aligners.items():
                aligned = aligner(features[m], masks[m])
                features[m], masks[m] = aligned.aligned, aligned.mask
        return features, masks
