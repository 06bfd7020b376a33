"""In-memory datasets: `DataSpec` (what a model needs to know), `SplitData` (one split) and `DatasetBundle`.

A split stores features once per *clip* and lets several samples point at the same clip (`clip_index`): in
multi-party data one clip yields a sample per (target person, segment), and storing the clip once keeps memory
proportional to the data, not to the number of annotations. For single-speaker data clips and samples coincide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmer.data.batch import Batch, PartyStructure
from mmer.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    dim: int
    max_len: int  # longest sequence in the data (models size position tables from it)


@dataclass(frozen=True)
class DataSpec:
    """The shape of a dataset as seen by a model; stored in checkpoints so a run can be reloaded."""

    name: str
    label_names: tuple[str, ...]
    modalities: tuple[ModalitySpec, ...]
    personality_dim: int = 0
    multi_party: bool = False
    max_persons: int = 1
    max_segments: int = 1

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label_names"] = list(self.label_names)
        d["modalities"] = [asdict(m) for m in self.modalities]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        d["label_names"] = tuple(d["label_names"])
        d["modalities"] = tuple(ModalitySpec(**m) for m in d["modalities"])
        return cls(**d)


@dataclass
class SplitData:
    """One split. K clips, N samples; T = token-grid length of multi-party clips."""

    features: dict[str, Tensor]  # modality -> float32 [K, L_m, D_m]
    masks: dict[str, Tensor]  # modality -> bool [K, L_m]
    labels: Tensor  # float32 [N, C]
    ids: list[str]  # N sample ids
    clip_index: Tensor  # long [N], row of each sample's clip
    personality: Tensor | None = None  # float32 [K, T, P]
    person: Tensor | None = None  # long [K, T], -1 = padding
    segment: Tensor | None = None  # long [K, T], -1 = padding
    target: Tensor | None = None  # bool [N, T]
    extras: dict[str, Tensor] = field(default_factory=dict)  # per-sample tensors [N, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_clips(self) -> int:
        return int(self.clip_index.max().item()) + 1 if len(self) else 0

    @property
    def multi_party(self) -> bool:
        return self.person is not None

    def batch(self, index: Tensor) -> Batch:
        """Gather samples `index` (long [B]) into a Batch, trimming token columns that are padding everywhere."""
        rows = self.clip_index[index]
        masks = {m: x[rows] for m, x in self.masks.items()}
        party, personality = None, None
        if self.person is not None:
            person, segment = self.person[rows], self.segment[rows]
            assert self.target is not None
            target = self.target[index]
            length = _used_length(person >= 0)
            party = PartyStructure(person[:, :length], segment[:, :length], target[:, :length])
            if self.personality is not None:
                personality = self.personality[rows, :length]
            lengths = {m: length for m in self.features}
        else:
            lengths = {m: _used_length(x) for m, x in masks.items()}
        return Batch(
            features={m: x[rows, : lengths[m]] for m, x in self.features.items()},
            masks={m: x[:, : lengths[m]] for m, x in masks.items()},
            labels=self.labels[index],
            ids=[self.ids[i] for i in index.tolist()],
            index=index,
            personality=personality,
            party=party,
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def subset(self, index: Tensor) -> SplitData:
        """Samples `index` (long [n]); clips are shared, not copied."""
        return SplitData(
            features=self.features,
            masks=self.masks,
            labels=self.labels[index],
            ids=[self.ids[i] for i in index.tolist()],
            clip_index=self.clip_index[index],
            personality=self.personality,
            person=self.person,
            segment=self.segment,
            target=None if self.target is None else self.target[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def validate(self, source: str, split: str) -> None:
        """Raise DataError naming `source`, the split, the field and the problem on any inconsistency."""
        where = f"{source}: split '{split}'"
        n = len(self)
        if n == 0:
            raise DataError(f"{where} is empty")
        if self.labels.dim() != 2 or self.labels.dtype != torch.float32:
            raise DataError(f"{where}: field 'labels' must be float32 [N, C], got {self.labels.dtype} {tuple(self.labels.shape)}")
        bad = ~((self.labels == 0) | (self.labels == 1))
        if bad.any():
            i = int(bad.any(dim=1).nonzero()[0])
            raise DataError(f"{where}: field 'labels' of sample '{self.ids[i]}' has values other than 0/1")
        if len(self.ids) != n or self.clip_index.shape != (n,):
            raise DataError(f"{where}: {len(self.ids)} ids and {tuple(self.clip_index.shape)} clip indices for {n} labels")
        if len(set(self.ids)) != n:
            raise DataError(f"{where}: field 'ids' has duplicates")
        k = None
        for m, x in self.features.items():
            mask = self.masks.get(m)
            if x.dim() != 3 or x.dtype != torch.float32:
                raise DataError(f"{where}: features of modality '{m}' must be float32 [K, L, D], got {x.dtype} {tuple(x.shape)}")
            if mask is None or mask.shape != x.shape[:2] or mask.dtype != torch.bool:
                got = None if mask is None else (mask.dtype, tuple(mask.shape))
                raise DataError(f"{where}: mask of modality '{m}' must be bool {tuple(x.shape[:2])}, got {got}")
            k = x.shape[0] if k is None else k
            if x.shape[0] != k:
                raise DataError(f"{where}: modality '{m}' has {x.shape[0]} clips, others have {k}")
            finite = torch.isfinite(x).all(dim=(1, 2))
            if not finite.all():
                clip = int((~finite).nonzero()[0])
                users = (self.clip_index == clip).nonzero()  # samples that read this clip
                first = f"sample '{self.ids[int(users[0])]}'" if len(users) else f"clip row {clip}, which no sample reads"
                raise DataError(f"{where}: features of modality '{m}' contain NaN/inf (first in {first})")
        if k is None:
            raise DataError(f"{where} has no modalities")
        if self.personality is not None and self.person is None:
            raise DataError(f"{where}: field 'personality' needs the multi-party fields 'person'/'segment'/'target'")
        if int(self.clip_index.min()) < 0 or int(self.clip_index.max()) >= k:
            raise DataError(f"{where}: field 'clip_index' points outside the {k} clips")
        if self.person is not None:
            self._validate_party(where, k)

    def _validate_party(self, where: str, k: int) -> None:
        assert self.person is not None and self.segment is not None
        t = self.person.shape[1]
        if self.person.shape != (k, t) or self.segment.shape != (k, t):
            raise DataError(f"{where}: fields 'person'/'segment' must be [K={k}, T]")
        if self.target is None or self.target.shape != (len(self), t) or self.target.dtype != torch.bool:
            raise DataError(f"{where}: field 'target' must be bool [N={len(self)}, T={t}]")
        for m, x in self.features.items():
            if x.shape[1] != t:
                raise DataError(f"{where}: modality '{m}' has {x.shape[1]} tokens but the party grid has {t}")
            if (self.masks[m] & (self.person < 0)).any():
                raise DataError(f"{where}: modality '{m}' has real tokens where 'person' marks padding")
        if not self.target.any(dim=1).all():
            i = int((~self.target.any(dim=1)).nonzero()[0])
            raise DataError(f"{where}: sample '{self.ids[i]}' has no target token")
        if (self.target & (self.person[self.clip_index] < 0)).any():
            raise DataError(f"{where}: field 'target' marks a padding token")
        if self.personality is not None and (self.personality.shape[:2] != (k, t) or not torch.isfinite(self.personality).all()):
            raise DataError(f"{where}: field 'personality' must be finite float32 [K={k}, T={t}, P]")


@dataclass
class DatasetBundle:
    spec: DataSpec
    splits: dict[str, SplitData]
    source: str  # where it came from (path or 'generated in memory ...')
    reference: dict[str, Any] = field(default_factory=dict)  # e.g. chance/ceiling metrics of synthetic data

    def validate(self) -> None:
        for name in SPLITS:
            if name not in self.splits:
                raise DataError(f"{self.source}: split '{name}' is missing")
        for name, split in self.splits.items():
            split.validate(self.source, name)
            if split.labels.shape[1] != self.spec.num_labels:
                raise DataError(
                    f"{self.source}: split '{name}' has {split.labels.shape[1]} labels, "
                    f"label_names has {self.spec.num_labels}"
                )
            for m in self.spec.modalities:
                if m.name not in split.features:
                    raise DataError(f"{self.source}: split '{name}' lacks modality '{m.name}'")
                if split.features[m.name].shape[2] != m.dim:
                    raise DataError(
                        f"{self.source}: split '{name}', modality '{m.name}' has dim "
                        f"{split.features[m.name].shape[2]}, expected {m.dim}"
                    )


def spec_from_splits(
    name: str,
    label_names: tuple[str, ...] | list[str],
    splits: dict[str, SplitData],
    modality_order: tuple[str, ...] | list[str] | None = None,
) -> DataSpec:
    """Derive a DataSpec (dims, max lengths, party extent) from loaded splits."""
    first = next(iter(splits.values()))
    order = tuple(modality_order or first.features)
    modalities = tuple(
        ModalitySpec(m, int(first.features[m].shape[2]), max(int(s.features[m].shape[1]) for s in splits.values()))
        for m in order
    )
    multi_party = first.person is not None
    max_persons = max_segments = 1
    if multi_party:
        max_persons = max(int(s.person.max()) + 1 for s in splits.values() if s.person is not None)
        max_segments = max(int(s.segment.max()) + 1 for s in splits.values() if s.segment is not None)
    personality_dim = 0 if first.personality is None else int(first.personality.shape[2])
    return DataSpec(name, tuple(label_names), modalities, personality_dim, multi_party, max_persons, max_segments)


def _used_length(mask: Tensor) -> int:
    """Number of leading columns of a [B, L] bool mask up to the last True anywhere (at least 1)."""
    cols = mask.any(dim=0).nonzero()
    return max(int(cols[-1]) + 1, 1) if len(cols) else 1
