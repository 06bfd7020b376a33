"""Miniature benchmark files in exactly the official on-disk formats (the licensed files cannot be used in tests).

Each writer returns what it wrote, so tests can compare the reader's output with the source values:
- `write_mosei_aligned`: the processed CMU-MOSEI `.pt` (TAILOR/CARAT/RAMer), float64, left zero padding, -inf audio;
- `write_mosei_unaligned`: MulT's `mosei_senti_data_noalign.pkl`;
- `write_m3ed_pickle` / `write_m3ed_converted`: M3ED's DialogueRNN-format 10-tuple and CARAT's `m3ed_data_60.pt`;
- `write_memor`: the MEmoR release directory (anno.json, id files, data.json, features/...).
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

MOSEI_SIZES = {"train": 7, "valid": 3, "test": 4}
MOSEI_TGT_VOCAB = {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "happy": 4, "sad": 5, "anger": 6, "surprise": 7, "disgust": 8, "fear": 9}
DIMS = {"src-text": 300, "src-visual": 35, "src-audio": 74}


def mosei_aligned_content(seed: int = 0, sizes: dict[str, int] = MOSEI_SIZES, length: int = 60) -> dict[str, Any]:
    """The dict the real file holds: features left-padded with zeros, '-inf' in some real audio steps."""
    rng = np.random.default_rng(seed)
    content: dict[str, Any] = {}
    for split, n in sizes.items():
        real = rng.integers(3, length + 1, size=n)
        real[0] = length  # one sample without padding
        part: dict[str, Any] = {}
        for key, dim in DIMS.items():
            x = rng.standard_normal((n, length, dim))
            for i, r in enumerate(real):
                x[i, : length - r] = 0.0
            part[key] = x
        part["src-audio"][0, -1, :3] = -np.inf
        if n > 1:
            part["src-audio"][1, -2, 5] = -np.inf
        targets = []
        for i in range(n):
            emotions = sorted(set(rng.integers(4, 10, size=rng.integers(0, 4)).tolist()))
            targets.append([2, *emotions, 3])
        targets[-1] = [2, 3]  # an empty label set (kept)
        part["tgt"] = targets
        content[split] = part
    content["dict"] = {"src": {"<blank>": 0, "<unk>": 1, "the": 2}, "tgt": dict(MOSEI_TGT_VOCAB)}
    content["settings"] = argparse.Namespace(max_seq_len=length, no_filter=False, seed=seed)
    return content


def write_mosei_aligned(path: Path, content: dict[str, Any] | None = None, *, per_sample: bool = False, zip_container: bool = True) -> dict[str, Any]:
    content = content if content is not None else mosei_aligned_content()
    stored = content
    if per_sample:  # the same data with one [L, D] array per sample
        stored = {**content}
        for split in ("train", "valid", "test"):
            stored[split] = {k: list(v) if k in DIMS else v for k, v in content[split].items()}
    torch.save(stored, path, _use_new_zipfile_serialization=zip_container)
    return content


def write_mosei_unaligned(path: Path, sizes: dict[str, int] = MOSEI_SIZES, seed: int = 1) -> dict[str, Any]:
    """MulT's pickle: text [N, 50, 300], vision [N, 500, 35], audio [N, 500, 74], sentiment labels, ids."""
    rng = np.random.default_rng(seed)
    content: dict[str, Any] = {}
    for split, n in sizes.items():
        part: dict[str, Any] = {}
        for key, (length, dim) in {"text": (50, 300), "vision": (500, 35), "audio": (500, 74)}.items():
            x = rng.standard_normal((n, length, dim)).astype(np.float32)
            real = rng.integers(2, length + 1, size=n)
            for i, r in enumerate(real):
                x[i, : length - r] = 0.0
            part[key] = x
        part["audio"][0, -1, 0] = -np.inf
        part["labels"] = rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32)
        part["id"] = np.array([[f"video{split}{i}", str(i)] for i in range(n)])
        content[split] = part
    with open(path, "wb") as fh:
        pickle.dump(content, fh, protocol=4)
    return content


# ---------------------------------------------------------------------------------------------------- M3ED

M3ED_DIMS = {3: 768, 4: 1024, 5: 342}  # text (RoBERTa), wav2vec audio, DenseFace visual


def m3ed_tuple(seed: int = 2) -> tuple[Any, ...]:
    """The 10-tuple: ids, speakers, labels, text, audio, visual, sentences, train/dev/test ids."""
    rng = np.random.default_rng(seed)
    splits = {"train": ["anjia_1", "anjia_2", "anjia_3", "huanlesong_7"], "dev": ["zhengfu_1", "zhengfu_2"], "test": ["xiaobieli_4", "xiaobieli_5"]}
    lengths = {"anjia_1": 62, "anjia_2": 5, "anjia_3": 9, "huanlesong_7": 3, "zhengfu_1": 4, "zhengfu_2": 12, "xiaobieli_4": 6, "xiaobieli_5": 2}
    ids = collections.OrderedDict()
    speakers, labels, sentences = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
    tables: dict[int, collections.OrderedDict[str, np.ndarray]] = {i: collections.OrderedDict() for i in M3ED_DIMS}
    for dialogue, n in lengths.items():
        ids[dialogue] = [f"{dialogue}_{j}" for j in range(n)]
        speakers[dialogue] = ["A" if j % 2 else "B" for j in range(n)]
        labels[dialogue] = rng.integers(0, 3, size=n).tolist()  # mostly Happy/Neutral/Sad
        sentences[dialogue] = [f"utterance {j}" for j in range(n)]
        for index, dim in M3ED_DIMS.items():
            tables[index][dialogue] = rng.standard_normal((n, dim)).astype(np.float32)
    labels["anjia_1"][61] = 6  # Surprise only in an utterance past the 60-utterance cut
    return (ids, speakers, labels, tables[3], tables[4], tables[5], sentences, splits["train"], splits["dev"], splits["test"])


def write_m3ed_pickle(path: Path, data: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    data = data if data is not None else m3ed_tuple()
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return data


def write_m3ed_converted(path: Path, data: tuple[Any, ...], settings: argparse.Namespace | None = None) -> dict[str, Any]:
    """What CARAT's utils/m3ed_reader.py writes: pad to 100, keep 60, tgt = [2, unique e+4 in order, 3]."""

    def one_split(dialogues: list[str]) -> dict[str, Any]:
        part: dict[str, Any] = {"src-visual": [], "src-text": [], "src-audio": [], "len_list": [], "tgt": []}
        for d in dialogues:
            utterance_labels = data[2][d]
            part["len_list"].append(len(utterance_labels))
            tgt = [2]
            for label in utterance_labels:
                if label + 4 not in tgt:
                    tgt.append(label + 4)
            part["tgt"].append(tgt + [3])
            for key, index in (("src-text", 3), ("src-visual", 4), ("src-audio", 5)):
                padded = np.zeros((100, M3ED_DIMS[index]), dtype=np.float32)
                padded[: len(utterance_labels)] = data[index][d]
                part[key].append(padded[:60])
        return part

    content = {"train": one_split(data[7]), "valid": one_split(data[8]), "test": one_split(data[9])}
    content["dict"] = {
        "tgt": {"<s>": 2, "</s>": 3, "<unk>": 1, "<blank>": 0, "Happy": 4, "Neutral": 5, "Sad": 6, "Disgust": 7, "Anger": 8, "Fear": 9, "Surprise": 10},
        "src": {"<blank>": 0, "<unk>": 1},
    }
    content["settings"] = settings or argparse.Namespace(max_seq_len=60)
    torch.save(content, path)
    return content


# --------------------------------------------------------------------------------------------------- MEmoR

SPEAKERS = ("sheldon", "leonard", "howard", "rajesh", "penny", "bernadette", "amy", "others")
FPS = 23.976
MEMOR_DIMS = {"text": 1024, "audio": 6373, "face": 1024, "object": 1230, "environment": 2048, "personality": 118}


@dataclass
class MemorClip:
    name: str
    start: float
    seg_start: list[float]
    seg_end: list[float]
    speakers: list[int]
    seg_ori_ind: list[int]
    on_character: list[int]
    faces: list[tuple[int, str]] = field(default_factory=list)  # (frame, person) per face crop
    missing_audio: tuple[int, ...] = ()  # segments without an audio feature


def memor_clips() -> list[MemorClip]:
    """Clip 0 is the worked example of the tests; the rest give the splits enough clips."""
    # segment 0 = frames 0..35, segment 1 = frames 35..71 (int((t - start) * 23.976))
    example_faces = [(f, "Sheldon") for f in range(0, 24, 2)]  # 12 crops of sheldon in segment 0
    example_faces += [(f, "Penny") for f in range(40, 64, 2)]  # 12 crops of penny in segment 1
    example_faces += [(f, "Penny") for f in (3, 5, 7)]  # 3 crops of penny in segment 0: too few
    clips = [
        MemorClip("s01e01_c01", 10.0, [10.0, 11.5], [11.5, 13.0], [0, 4], [3, 4], [0, 4], example_faces, missing_audio=(1,)),
        MemorClip("s01e01_c02", 0.0, [0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1, 2, 1], [0, 1, 2], [1, 2], [(f, "Leonard") for f in range(5)]),
    ]
    for i in range(3, 11):
        faces = [(f, SPEAKERS[i % 4].capitalize()) for f in range(0, 30, 2)]
        clips.append(MemorClip(f"s02e0{i % 9}_c{i:02d}", 5.0, [5.0, 6.0], [6.0, 7.5], [i % 4, 7], [0, 1], [i % 4, 7], faces))
    return clips


def memor_annotations(clips: list[MemorClip]) -> list[dict[str, Any]]:
    """(clip, character, moment, primary emotion, fine emotion) records; list index = annotation id."""
    annotations = [
        {"clip": clips[0].name, "character": 4, "moment": 12.0, "emotion": "joy", "fine": "serenity"},  # penny, seg 1
        {"clip": clips[0].name, "character": 1, "moment": 10.5, "emotion": "anger", "fine": "annoyance"},  # leonard, not on screen
        {"clip": clips[0].name, "character": 0, "moment": 13.5, "emotion": "neutral", "fine": "neutral"},  # after the last segment
        {"clip": clips[1].name, "character": 2, "moment": 1.5, "emotion": "fear", "fine": "fear"},
    ]
    emotions = ["neutral", "joy", "sadness", "surprise", "trust", "disgust"]
    for i, clip in enumerate(clips[2:]):
        annotations.append({"clip": clip.name, "character": clip.on_character[0], "moment": 5.5, "emotion": emotions[i % 6], "fine": ["boredom", "interest"][i % 2]})
    return annotations


def write_memor(root: Path, seed: int = 3) -> dict[str, Any]:
    """The MEmoR directory; clips 0-7 (annotations 0-3 and 4-7) train, the last 2 clips test."""
    rng = np.random.default_rng(seed)
    clips = memor_clips()
    annotations = memor_annotations(clips)
    root.mkdir(parents=True, exist_ok=True)
    visual = root / "features" / "visual_features"
    for sub in ("face_features", "face_names", "object_features", "environment_features"):
        (visual / sub).mkdir(parents=True, exist_ok=True)
    anno = {
        "primary": [{k: a[k] for k in ("clip", "character", "moment", "emotion")} for a in annotations],
        "fine_grained": [{**{k: a[k] for k in ("clip", "character", "moment")}, "emotion": a["fine"]} for a in annotations],
    }
    (root / "anno.json").write_text(json.dumps(anno))
    n_train = len(annotations) - 2
    (root / "train_id.txt").write_text("".join(f"{i}\n" for i in range(n_train)))
    (root / "test_id.txt").write_text("".join(f"{i}\n" for i in range(n_train, len(annotations))))
    data, text, audio, tensors = {}, {}, {}, {}
    for clip in clips:
        data[clip.name] = {
            "on_character": clip.on_character, "seg_start": clip.seg_start, "seg_end": clip.seg_end, "start": clip.start,
            "speakers": clip.speakers, "seg_ori_ind": clip.seg_ori_ind, "season": 1, "episode": 1,
        }
        for ii, ori in enumerate(clip.seg_ori_ind):
            text[f"{clip.name}+{ii}"] = rng.standard_normal(MEMOR_DIMS["text"]).round(4).tolist()
            if ii not in clip.missing_audio:
                audio[f"{clip.name}+{ori}"] = rng.standard_normal(MEMOR_DIMS["audio"]).round(4).tolist()
        n_frames = int((clip.seg_end[-1] - clip.start) * FPS) + 5
        faces = clip.faces or [(0, "Sheldon")]
        tensors[clip.name] = {
            "face_features": torch.randn(len(faces), MEMOR_DIMS["face"], generator=torch.Generator().manual_seed(len(tensors))),
            "object_features": torch.rand(n_frames, MEMOR_DIMS["object"]),
            "environment_features": torch.rand(n_frames, MEMOR_DIMS["environment"]),
        }
        for sub, value in tensors[clip.name].items():
            torch.save(value, visual / sub / f"{clip.name}.pt")
        (visual / "face_names" / f"{clip.name}.txt").write_text("\t".join(f"{f}_{p}.jpg" for f, p in faces) + "\n")
    (root / "data.json").write_text(json.dumps(data))
    (root / "features" / "text_features.json").write_text(json.dumps(text))
    (root / "features" / "audio_features.json").write_text(json.dumps(audio))
    personality = rng.uniform(0, 1, size=(len(SPEAKERS), MEMOR_DIMS["personality"]))
    (root / "features" / "character_features.csv").write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in personality) + "\n")
    return {"clips": clips, "annotations": annotations, "data": data, "text": text, "audio": audio, "tensors": tensors,
            "personality": np.loadtxt(root / "features" / "character_features.csv", delimiter=",")}
