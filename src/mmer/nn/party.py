"""Multi-party helpers: move tokens between the flat token axis and a (person, segment) grid, and mark targets.

A multi-party batch stores each clip as T tokens with `party.person[b, t]` and `party.segment[b, t]` (-1 on
padding). Person- and segment-structured attention (RAMer's inter-/intra-person attention) wants a dense grid
[B, P, S, D]; `to_grid` scatters tokens into it and `from_grid` gathers them back, both by index arithmetic (no
loop over samples). Party-agnostic models (CARAT, TAILOR, AMP) read the clip as one sequence and learn
which token is the prediction target through `TargetMarker` (the `baseline` adds its own zero-initialised target
vector, which also pools the target token separately).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmer.data.batch import PartyStructure


def grid_size(party: PartyStructure) -> tuple[int, int]:
    """(P, S): persons and segments needed for this batch's grid."""
    return int(party.person.max().clamp(min=0)) + 1, int(party.segment.max().clamp(min=0)) + 1


def to_grid(x: Tensor, party: PartyStructure, persons: int, segments: int) -> tuple[Tensor, Tensor]:
    """x [B, T, D] -> (grid [B, P, S, D], occupied [B, P, S] bool). Padding tokens are dropped; empty cells are 0.

    Each (person, segment) must hold at most one token (the MEmoR row layout); later duplicates would overwrite.
    """
    b, t, d = x.shape
    valid = party.valid  # [B, T]
    cell = party.person.clamp(min=0) * segments + party.segment.clamp(min=0)  # [B, T]
    flat_index = torch.arange(b, device=x.device)[:, None] * (persons * segments) + cell  # [B, T]
    grid = x.new_zeros(b * persons * segments, d)
    occupied = torch.zeros(b * persons * segments, dtype=torch.bool, device=x.device)
    grid[flat_index[valid]] = x[valid]
    occupied[flat_index[valid]] = True
    return grid.view(b, persons, segments, d), occupied.view(b, persons, segments)


def from_grid(grid: Tensor, party: PartyStructure) -> Tensor:
    """grid [B, P, S, D] -> tokens [B, T, D] (zeros on padding tokens)."""
    b, persons, segments, d = grid.shape
    cell = party.person.clamp(min=0) * segments + party.segment.clamp(min=0)  # [B, T]
    tokens = grid.reshape(b, persons * segments, d).gather(1, cell.unsqueeze(-1).expand(-1, -1, d))  # [B, T, D]
    return tokens * party.valid.unsqueeze(-1).to(tokens.dtype)


class TargetMarker(nn.Module):
    """Adds a learned vector to the prediction-target tokens of a multi-party clip (identity without a party)."""

    def __init__(self, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.embedding, std=0.02)

    def forward(self, x: Tensor, party: PartyStructure | None) -> Tensor:
        """x [B, T, D] -> [B, T, D]."""
        if party is None:
            return x
        return x + party.target.unsqueeze(-1).to(x.dtype) * self.embedding
