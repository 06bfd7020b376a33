"""The one batch type every dataset produces and every model consumes.

Conventions (docs/design.md, "Conventions"):
- `features[m]`: float32 [B, L_m, D_m]; `masks[m]`: bool [B, L_m], True = real token. A missing modality is an
  all-False mask (its features are zeros), never zeros posing as data.
- `labels`: float32 multi-hot [B, C] in the dataset's `label_names` order.
- Multi-party clips (`party` is set) put every modality on one token grid of length T: token t is person
  `party.person[b, t]` in segment `party.segment[b, t]` (both -1 on padding), and `party.target[b, t]` marks the
  token(s) whose emotions are the sample's labels. `personality` is float32 [B, T, P], the traits of each
  token's person. Single-speaker data has `party=None`: one person, one segment, every token is context.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class PartyStructure:
    """Who and when each token is, for multi-party clips. All tensors are [B, T]."""

    person: Tensor  # long [B, T], -1 on padding
    segment: Tensor  # long [B, T], -1 on padding
    target: Tensor  # bool [B, T], True at the prediction target token(s)

    @property
    def valid(self) -> Tensor:
        """bool [B, T]: token exists (is some person in some segment)."""
        return self.person >= 0

    def to(self, device: torch.device | str) -> PartyStructure:
        return PartyStructure(self.person.to(device), self.segment.to(device), self.target.to(device))


@dataclass
class Batch:
    features: dict[str, Tensor]  # modality -> float32 [B, L_m, D_m]
    masks: dict[str, Tensor]  # modality -> bool [B, L_m]
    labels: Tensor  # float32 [B, C]
    ids: list[str]
    index: Tensor  # long [B], position of each sample in its split (keeps evaluation ordered across processes)
    personality: Tensor | None = None  # float32 [B, T, P] (multi-party only)
    party: PartyStructure | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)  # reader-specific per-sample tensors

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def present(self) -> Tensor:
        """bool [B, M]: modality m has at least one real token in sample b (order of `modalities`)."""
        return torch.stack([self.masks[m].any(dim=1) for m in self.modalities], dim=1)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            features={m: x.to(device) for m, x in self.features.items()},
            masks={m: x.to(device) for m, x in self.masks.items()},
            labels=self.labels.to(device),
            ids=self.ids,
            index=self.index.to(device),
            personality=None if self.personality is None else self.personality.to(device),
            party=None if self.party is None else self.party.to(device),
            extras={k: v.to(device) for k, v in self.extras.items()},
        )

    def replace(self, **changes: object) -> Batch:
        return replace(self, **changes)

    def chunks(self, size: int) -> list[Batch]:
        """Consecutive sub-batches of at most `size` samples (views, not copies; padding lengths unchanged)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        return [self._rows(slice(start, start + size)) for start in range(0, self.size, size)]

    def _rows(self, rows: slice) -> Batch:
        party = self.party
        if party is not None:
            party = PartyStructure(party.person[rows], party.segment[rows], party.target[rows])
        return Batch(
            features={m: x[rows] for m, x in self.features.items()},
            masks={m: x[rows] for m, x in self.masks.items()},
            labels=self.labels[rows],
            ids=self.ids[rows],
            index=self.index[rows],
            personality=None if self.personality is None else self.personality[rows],
            party=party,
            extras={k: v[rows] for k, v in self.extras.items()},
        )
