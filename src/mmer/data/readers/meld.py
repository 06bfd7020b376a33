"""`meld`: MELD (Poria et al., ACL 2019) dialogues from *Friends* as multi-party data, text only.

Input (`--root`, e.g. shared/data/meld): `train_sent_emo.csv`, `dev_sent_emo.csv` (our `valid`) and
`test_sent_emo.csv`, the official splits, with the columns Utterance, Speaker, Emotion, Dialogue_ID and
Utterance_ID (others are ignored).

Structure: one clip per dialogue. Its persons are its speakers in order of first appearance; its segments are its
utterances in Utterance_ID order, renumbered 0..S-1 (MELD leaves gaps where utterances were dropped).
- layout "grid" (default, like MEmoR's rows): one token per (person, segment), person-major (token p*S + s); only the
  token of the utterance's speaker carries text, the other persons' tokens of that segment have mask False.
- layout "utterance": one token per utterance (token s, person = its speaker); the same information in S instead of
  P*S tokens (about 6.7x fewer: train has 9,989 utterance tokens against 30,611 grid tokens).
One sample per utterance: its target is the speaker's token at that utterance, its label the utterance's emotion as
a one-hot over (neutral, joy, surprise, anger, sadness, disgust, fear). Clips are stored once and shared by their
samples through `clip_index`. Every token is one utterance vector, so the text encoder pools each utterance (option
`pooling`: "mean", the default, or "cls" for minilm). There is no personality, audio or video here.
Sample ids: `dia<Dialogue_ID>_utt<Utterance_ID>` (MELD's own naming; unique within a split).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mmer.data.dataset import DatasetBundle, SplitData, spec_from_splits
from mmer.errors import ConfigError, DataError, text_file_errors
from mmer.featurize.options import TextOptions
from mmer.registry import DATASETS

EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


@dataclass
class MeldOptions(TextOptions):
    encoder: Literal["glove-50", "minilm"] = "minilm"
    pooling: Literal["mean", "cls"] = "mean"  # one vector per utterance token; "cls" is minilm only
    layout: Literal["grid", "utterance"] = "grid"


@dataclass
class Utterances:
    """One split's utterances sorted by (dialogue, utterance id), with their place in the dialogue."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # int64 [U], index into EMOTIONS
    clip: np.ndarray  # int64 [U], dialogue number 0..K-1 in Dialogue_ID order
    segment: np.ndarray  # int64 [U], position of the utterance in its dialogue
    person: np.ndarray  # int64 [U], speaker number in order of first appearance in the dialogue

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(segments S_k, persons P_k) per dialogue, int64 [K] each."""
        k = int(self.clip.max()) + 1
        segments = np.bincount(self.clip, minlength=k)
        persons = np.zeros(k, dtype=np.int64)
        np.maximum.at(persons, self.clip, self.person + 1)
        return segments, persons


def read_utterances(path: Path) -> Utterances:
    """One of MELD's *_sent_emo.csv files, checked row by row (a bad row is named by its line)."""
    if not path.is_file():
        raise DataError(f"{path}: file does not exist (meld needs {', '.join(FILES.values())} under --root)")
    with text_file_errors(path), path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        lacking = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if lacking:
            raise DataError(f"{path}: missing column(s) {', '.join(lacking)}")
        records = []
        for row in reader:
            line = reader.line_num
            emotion = (row["Emotion"] or "").strip().lower()
            if emotion not in EMOTIONS:
                raise DataError(f"{path}: line {line}, column 'Emotion': {row['Emotion']!r} is not one of {', '.join(EMOTIONS)}")
            try:
                dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {line}: Dialogue_ID/Utterance_ID must be integers") from None
            speaker = (row["Speaker"] or "").strip()
            if not speaker:
                raise DataError(f"{path}: line {line}, column 'Speaker' is empty")
            records.append((dialogue, utterance, speaker, row["Utterance"] or "", EMOTIONS.index(emotion), line))
    if not records:
        raise DataError(f"{path}: has no utterances")
    records.sort(key=lambda r: (r[0], r[1]))
    for a, b in zip(records, records[1:]):
        if a[:2] == b[:2]:
            raise DataError(f"{path}: lines {a[5]} and {b[5]} are both dialogue {a[0]}, utterance {a[1]}")
    clip, segment, person = [], [], []
    speakers: dict[str, int] = {}
    for i, (dialogue, _, speaker, *_rest) in enumerate(records):
        if i == 0 or dialogue != records[i - 1][0]:  # a new dialogue starts
            speakers = {}
            clip.append(clip[-1] + 1 if clip else 0)
            segment.append(0)
        else:
            clip.append(clip[-1])
            segment.append(segment[-1] + 1)
        person.append(speakers.setdefault(speaker, len(speakers)))
    return Utterances(
        ids=[f"dia{d}_utt{u}" for d, u, *_ in records],
        texts=[r[3] for r in records],
        labels=np.array([r[4] for r in records], dtype=np.int64),
        clip=np.array(clip, dtype=np.int64),
        segment=np.array(segment, dtype=np.int64),
        person=np.array(person, dtype=np.int64),
    )


def build_split(utt: Utterances, feats: np.ndarray, mask: np.ndarray, layout: str) -> SplitData:
    """Token grid of every dialogue and one sample per utterance. feats float32 [U, 1, D], mask bool [U, 1]."""
    segments, persons = utt.counts()  # [K], [K]
    k, u = len(segments), len(utt.ids)
    if layout == "grid":
        extent = persons * segments  # tokens per dialogue
        t = np.arange(int(extent.max()))[None, :]  # [1, T]
        valid = t < extent[:, None]  # [K, T]
        person = np.where(valid, t // segments[:, None], -1)
        segment = np.where(valid, t % segments[:, None], -1)
        token = utt.person * segments[utt.clip] + utt.segment  # [U] token of each utterance's speaker
    else:
        t = np.arange(int(segments.max()))[None, :]
        valid = t < segments[:, None]
        person = np.full(valid.shape, -1, dtype=np.int64)
        person[utt.clip, utt.segment] = utt.person
        segment = np.where(valid, t, -1)
        token = utt.segment
    width = person.shape[1]
    features = np.zeros((k, width, feats.shape[2]), dtype=np.float32)  # [K, T, D]
    masks = np.zeros((k, width), dtype=bool)  # [K, T]
    features[utt.clip, token] = feats[:, 0]
    masks[utt.clip, token] = mask[:, 0]
    target = np.zeros((u, width), dtype=bool)  # [U, T]
    target[np.arange(u), token] = True
    return SplitData(
        features={"text": torch.from_numpy(features)},
        masks={"text": torch.from_numpy(masks)},
        labels=torch.from_numpy(np.eye(len(EMOTIONS), dtype=np.float32)[utt.labels]),
        ids=utt.ids,
        clip_index=torch.from_numpy(utt.clip),
        person=torch.from_numpy(person.astype(np.int64)),
        segment=torch.from_numpy(segment.astype(np.int64)),
        target=torch.from_numpy(target),
    )


@DATASETS.register(
    "meld",
    options=MeldOptions,
    summary="MELD dialogues as multi-party data: speakers x utterances, featurised text, 7 emotions (one-hot)",
    needs_root=True,
)
def read_meld(root: Path | None, options: MeldOptions) -> DatasetBundle:
    if root is None:
        raise DataError("dataset 'meld' needs --root: the folder with train/dev/test_sent_emo.csv (e.g. shared/data/meld)")
    if options.pooling not in ("mean", "cls"):
        raise ConfigError(f"meld needs one vector per utterance: pooling must be 'mean' or 'cls', got {options.pooling!r}")
    if options.layout not in ("grid", "utterance"):
        raise ConfigError(f"layout must be 'grid' or 'utterance', got {options.layout!r}")
    utterances = {split: read_utterances(root / name) for split, name in FILES.items()}
    texts = [t for utt in utterances.values() for t in utt.texts]
    feats, mask = options.featurize(texts)  # [U_all, 1, D], [U_all, 1]
    splits, start = {}, 0
    for split, utt in utterances.items():
        end = start + len(utt.ids)
        splits[split] = build_split(utt, feats[start:end], mask[start:end], options.layout)
        start = end
    spec = spec_from_splits("meld", EMOTIONS, splits, ("text",))
    return DatasetBundle(spec, splits, source=str(root))
