"""MEmoR (The Big Bang Theory clips): multi-party tokens with personality, rebuilt from MEmoR's feature extractors.

Files under --root (the official release layout):
    anno.json                {'primary' | 'fine_grained': [{clip, character, moment, emotion}, ...]}
    train_id.txt, test_id.txt   one annotation index per line
    data.json                {clip: {on_character, seg_start, seg_end, start, speakers, seg_ori_ind}}
    features/text_features.json    {'<clip>+<segment>': 1024 floats}
    features/audio_features.json   {'<clip>+<seg_ori_ind>': 6373 floats} (keys may be missing)
    features/character_features.csv   8 rows (one per character) x 118 personality values
    features/visual_features/{face_features,object_features,environment_features}/<clip>.pt, face_names/<clip>.txt

A clip becomes one row of tokens, one per (person, segment), person-major like MEmoR's extractors:
- text/audio: the segment's feature on its speaker's token only; every other token is zero with mask False;
- visual: mean face (1024) + mean object (1230) + mean environment (2048) features of the segment's frames when
  the person has more than 10 face crops there (and the clip more than 10 in all), else zero with mask False;
- personality: the person's 118 traits, each trait L2-normalised across the 8 characters.
Persons of a clip = sorted(on_character + every character annotated in that clip within the split); the clip is
stored once and its samples point at it. See docs/datasets.md for sample modes, splits and deviations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mmer.data.dataset import DatasetBundle, SplitData, spec_from_splits
from mmer.data.json_stream import iter_json_object, read_json
from mmer.data.safe_load import load_tensor_file, require_file
from mmer.errors import DataError, text_file_errors
from mmer.registry import DATASETS

SPEAKERS = ("sheldon", "leonard", "howard", "rajesh", "penny", "bernadette", "amy", "others")
EMOTIONS = ("neutral", "joy", "anger", "disgust", "sadness", "surprise", "fear", "anticipation", "trust",
            "serenity", "interest", "annoyance", "boredom", "distraction")  # primary = first 9, fine = all 14
FPS = 23.976  # frame rate of the clips (frame index = seconds since clip start x FPS)
FACE_MIN = 10  # a person needs more than this many face crops in a segment (and the clip in all) for visual
MODALITIES = ("text", "visual", "audio")
HOLDS = ("anno.json, data.json, train_id.txt, test_id.txt and features/ (text_features.json, audio_features.json, "
         "character_features.csv, visual_features/...) in the official MEmoR layout")


@dataclass
class MEmoROptions:
    samples: Literal["annotation", "clip"] = "annotation"  # annotation: MEmoR's protocol; clip: RAMer's code
    valid_fraction: float = 0.2  # share of training *clips* held out for validation (official: 0.2)
    split_seed: int = 2020  # seed of that draw (official: 2020)
    text_key: Literal["segment", "original"] = "segment"  # text feature key: <clip>+<segment index | seg_ori_ind>
    text_dim: int = 1024
    audio_dim: int = 6373
    face_dim: int = 1024
    object_dim: int = 1230
    environment_dim: int = 2048


@dataclass(frozen=True)
class Annotation:
    index: int  # position in anno.json's list (what train_id.txt / test_id.txt hold)
    clip: str
    character: int
    moment: float
    emotion: int


def load_memor(root: Path | None, options: MEmoROptions | None, emotion_type: str, name: str) -> DatasetBundle:
    options = options or MEmoROptions()
    if not 0.0 < options.valid_fraction < 1.0:
        raise DataError(f"{name} option 'valid_fraction' must be in (0, 1), got {options.valid_fraction}")
    anno_path = require_file(root, "anno.json", name, HOLDS)
    assert root is not None
    num_classes = 9 if emotion_type == "primary" else len(EMOTIONS)
    annotations = _read_annotations(anno_path, emotion_type, num_classes)
    records = read_json(require_file(root, "data.json", name, HOLDS))
    if not isinstance(records, dict):
        raise DataError(f"{root / 'data.json'}: expected a dict keyed by clip id, got {type(records).__name__}")
    chosen = {
        split: _select(annotations, require_file(root, f"{split}_id.txt", name, HOLDS)) for split in ("train", "test")
    }
    clips = {a.clip for group in chosen.values() for a in group}
    for a in (a for group in chosen.values() for a in group):
        if a.clip not in records:
            raise DataError(f"{root / 'data.json'}: has no clip '{a.clip}' (annotation {a.index} of {anno_path.name})")
    wanted = _key_filter(clips)
    source = _Sources(
        root=root,
        records=records,
        text=_read_feature_json(require_file(root, "features/text_features.json", name, HOLDS), options.text_dim, wanted),
        audio=_read_feature_json(require_file(root, "features/audio_features.json", name, HOLDS), options.audio_dim, wanted),
        personality=_read_personality(require_file(root, "features/character_features.csv", name, HOLDS)),
        options=options,
    )
    train, valid = _carve_validation(chosen["train"], options.valid_fraction, options.split_seed, name)
    splits = {s: _build_split(group, source, num_classes) for s, group in (("train", train), ("valid", valid), ("test", chosen["test"]))}
    spec = spec_from_splits(name, EMOTIONS[:num_classes], splits, MODALITIES)
    return DatasetBundle(spec, splits, str(root))


def _make_loader(emotion_type: str, name: str) -> Callable[[Path | None, MEmoROptions | None], DatasetBundle]:
    def load(root: Path | None, options: MEmoROptions | None) -> DatasetBundle:
        return load_memor(root, options, emotion_type, name)

    return load


DATASETS.register(
    "memor-primary", options=MEmoROptions, summary="MEmoR multi-party clips, 9 primary emotions, personality", needs_root=True
)(
    _make_loader("primary", "memor-primary")
)
DATASETS.register(
    "memor-fine", options=MEmoROptions, summary="MEmoR multi-party clips, 14 fine-grained emotions, personality", needs_root=True
)(
    _make_loader("fine_grained", "memor-fine")
)


# --------------------------------------------------------------------------------------- annotations, splits


def _read_annotations(path: Path, emotion_type: str, num_classes: int) -> list[Annotation]:
    content = read_json(path)
    if not isinstance(content, dict) or not isinstance(content.get(emotion_type), list):
        raise DataError(f"{path}: field '{emotion_type}' must be a list of annotations")
    classes = EMOTIONS[:num_classes]
    annotations = []
    for i, record in enumerate(content[emotion_type]):
        where = f"{path}: {emotion_type}[{i}]"
        if not isinstance(record, dict) or any(k not in record for k in ("clip", "character", "moment", "emotion")):
            raise DataError(f"{where} must have the fields clip, character, moment and emotion")
        character, moment, emotion = record["character"], record["moment"], record["emotion"]
        if not _is_int(character) or not 0 <= character < len(SPEAKERS):
            raise DataError(f"{where}: field 'character' must be an index 0..{len(SPEAKERS) - 1}, got {character!r}")
        if not isinstance(moment, (int, float)) or isinstance(moment, bool):
            raise DataError(f"{where}: field 'moment' must be a time in seconds, got {moment!r}")
        if emotion not in classes:
            raise DataError(f"{where}: field 'emotion' is {emotion!r}, not one of {', '.join(classes)}")
        annotations.append(Annotation(i, str(record["clip"]), int(character), float(moment), classes.index(emotion)))
    return annotations


def _select(annotations: list[Annotation], id_path: Path) -> list[Annotation]:
    """The annotations listed in an id file, in anno.json order (as the official loaders iterate them)."""
    ids = set()
    with text_file_errors(id_path):
        lines = id_path.read_text(encoding="utf-8").splitlines()
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            index = int(line.strip())
        except ValueError:
            raise DataError(f"{id_path}: line {line_no} is {line.strip()!r}, not an annotation index") from None
        if not 0 <= index < len(annotations):
            raise DataError(f"{id_path}: line {line_no}: annotation index {index} is outside 0..{len(annotations) - 1}")
        ids.add(index)
    return [annotations[i] for i in sorted(ids)]


def _carve_validation(train: list[Annotation], fraction: float, seed: int, name: str) -> tuple[list[Annotation], list[Annotation]]:
    """Hold out int(n_clips x fraction) training clips, drawn like the official loader (np.random.seed + shuffle)."""
    clips = list(dict.fromkeys(a.clip for a in train))  # order of first appearance
    order = np.arange(len(clips))
    np.random.RandomState(seed).shuffle(order)
    n_valid = int(len(clips) * fraction)
    if n_valid == 0 or n_valid == len(clips):
        raise DataError(f"{name}: valid_fraction {fraction} of {len(clips)} training clips leaves an empty train or valid split")
    held_out = {clips[i] for i in order[:n_valid]}
    return [a for a in train if a.clip not in held_out], [a for a in train if a.clip in held_out]


# ------------------------------------------------------------------------------------------------ features


@dataclass
class _Sources:
    root: Path
    records: dict[str, Any]
    text: dict[str, np.ndarray]
    audio: dict[str, np.ndarray]
    personality: np.ndarray  # float32 [8, P]
    options: MEmoROptions


@dataclass
class _Layout:
    """Where a clip's tokens are: person-major, token = position of person x segments + segment."""

    persons: list[int]
    segments: int

    @property
    def size(self) -> int:
        return len(self.persons) * self.segments

    def token(self, person: int, segment: int) -> int:
        return self.persons.index(person) * self.segments + segment


def _build_split(annotations: list[Annotation], source: _Sources, num_classes: int) -> SplitData:
    by_clip: dict[str, list[Annotation]] = {}
    for a in annotations:
        by_clip.setdefault(a.clip, []).append(a)
    layouts = [_layout(clip, group, source) for clip, group in by_clip.items()]
    k, t = len(layouts), max((layout.size for layout in layouts), default=1)
    o = source.options
    dims = {"text": o.text_dim, "visual": o.face_dim + o.object_dim + o.environment_dim, "audio": o.audio_dim}
    features = {m: torch.zeros(k, t, d) for m, d in dims.items()}  # [K, T, D_m]
    masks = {m: torch.zeros(k, t, dtype=torch.bool) for m in dims}  # [K, T]
    person = torch.full((k, t), -1, dtype=torch.long)
    segment = torch.full((k, t), -1, dtype=torch.long)
    personality = torch.zeros(k, t, source.personality.shape[1])  # [K, T, P]
    for row, (clip_id, layout) in enumerate(zip(by_clip, layouts)):
        n = layout.size
        clip_features, clip_masks = _clip_features(clip_id, layout, source)
        for m in dims:
            features[m][row, :n] = torch.from_numpy(clip_features[m])
            masks[m][row, :n] = torch.from_numpy(clip_masks[m])
        who = torch.tensor(layout.persons).repeat_interleave(layout.segments)  # [n], person-major
        person[row, :n] = who
        segment[row, :n] = torch.arange(layout.segments).repeat(len(layout.persons))
        personality[row, :n] = torch.from_numpy(source.personality)[who]
    rows, labels, targets, ids = _samples(by_clip, layouts, source, num_classes, t)
    return SplitData(
        features=features, masks=masks, labels=labels, ids=ids, clip_index=rows,
        personality=personality, person=person, segment=segment, target=targets,
    )


def _samples(by_clip: dict[str, list[Annotation]], layouts: list[_Layout], source: _Sources, num_classes: int, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """annotation mode: one sample per annotation, one-hot label, target = its (person, segment) token.
    clip mode: one sample per clip, labels = union over its annotations, targets = all their tokens."""
    per_clip = source.options.samples == "clip"
    rows, ids, label_rows, target_rows = [], [], [], []
    for row, ((clip_id, group), layout) in enumerate(zip(by_clip.items(), layouts)):
        record = source.records[clip_id]
        tokens = [layout.token(a.character, _target_segment(record, a.moment)) for a in group]
        units = [(clip_id, group, tokens)] if per_clip else [(f"{clip_id}#{a.index}", [a], [tok]) for a, tok in zip(group, tokens)]
        for sample_id, members, member_tokens in units:
            label = torch.zeros(num_classes)
            label[[a.emotion for a in members]] = 1.0
            target = torch.zeros(t, dtype=torch.bool)
            target[member_tokens] = True
            rows.append(row)
            ids.append(sample_id)
            label_rows.append(label)
            target_rows.append(target)
    if not rows:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, num_classes), torch.zeros(0, t, dtype=torch.bool), []
    return torch.tensor(rows), torch.stack(label_rows), torch.stack(target_rows), ids


def _layout(clip_id: str, annotations: list[Annotation], source: _Sources) -> _Layout:
    record = _check_record(source.records[clip_id], f"{source.root / 'data.json'}: clip '{clip_id}'")
    persons = sorted({int(c) for c in record["on_character"]} | {a.character for a in annotations})
    return _Layout(persons, len(record["seg_start"]))


def _clip_features(clip_id: str, layout: _Layout, source: _Sources) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per modality float32 [T_c, D] and bool [T_c]; text/audio only on the segment speaker's token."""
    record, o = source.records[clip_id], source.options
    text = np.zeros((layout.size, o.text_dim), dtype=np.float32)
    audio = np.zeros((layout.size, o.audio_dim), dtype=np.float32)
    text_mask = np.zeros(layout.size, dtype=bool)
    audio_mask = np.zeros(layout.size, dtype=bool)
    for ii, speaker in enumerate(record["speakers"]):
        if speaker not in layout.persons:
            continue
        row = layout.token(speaker, ii)
        text_key = f"{clip_id}+{ii if o.text_key == 'segment' else record['seg_ori_ind'][ii]}"
        if text_key not in source.text:
            raise DataError(
                f"{source.root / 'features' / 'text_features.json'}: no feature '{text_key}' for the speaker of segment "
                f"{ii} of clip '{clip_id}' (option text_key='{o.text_key}'; the other convention is '<clip>+"
                f"{'seg_ori_ind' if o.text_key == 'segment' else 'segment index'}')"
            )
        text[row], text_mask[row] = source.text[text_key], True
        audio_key = f"{clip_id}+{record['seg_ori_ind'][ii]}"
        if audio_key in source.audio:  # missing audio is a missing modality, as in MEmoR
            audio[row], audio_mask[row] = source.audio[audio_key], True
    visual, visual_mask = _visual_rows(clip_id, record, layout.persons, source)
    return {"text": text, "visual": visual, "audio": audio}, {"text": text_mask, "visual": visual_mask, "audio": audio_mask}


def _check_record(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{where} must be a dict, got {type(record).__name__}")
    for key in ("on_character", "seg_start", "seg_end", "start", "speakers", "seg_ori_ind"):
        if key not in record:
            raise DataError(f"{where} has no field '{key}'")
    segments = record["seg_start"]
    if not isinstance(segments, list) or not segments:
        raise DataError(f"{where}: field 'seg_start' must be a non-empty list of times")
    for key in ("seg_end", "speakers", "seg_ori_ind"):
        if not isinstance(record[key], list) or len(record[key]) != len(segments):
            raise DataError(f"{where}: field '{key}' must be a list of {len(segments)} entries (one per segment)")
    on_screen = record["on_character"]
    if not isinstance(on_screen, list) or not all(_is_int(c) and 0 <= c < len(SPEAKERS) for c in on_screen):
        raise DataError(f"{where}: field 'on_character' must list character indices 0..{len(SPEAKERS) - 1}")
    times = [record["start"], *segments, *record["seg_end"]]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in times):
        raise DataError(f"{where}: fields 'start', 'seg_start' and 'seg_end' must hold times in seconds")
    return record


def _visual_rows(clip_id: str, record: dict[str, Any], persons: list[int], source: _Sources) -> tuple[np.ndarray, np.ndarray]:
    """float32 [T_c, face+object+environment], bool [T_c]: MEmoR's visual extractor."""
    o = source.options
    segments = len(record["seg_start"])
    out = np.zeros((len(persons) * segments, o.face_dim + o.object_dim + o.environment_dim), dtype=np.float32)
    valid = np.zeros(len(out), dtype=bool)
    visual_dir = source.root / "features" / "visual_features"
    names_path = visual_dir / "face_names" / f"{clip_id}.txt"
    if not names_path.is_file():
        raise DataError(f"{names_path}: file is missing (face crop names of clip '{clip_id}')")
    with open(names_path) as fh:
        names = fh.readline().strip().split("\t")
    if len(names) <= FACE_MIN:
        return out, valid
    frames, owners = _parse_face_names(names, names_path)
    faces = _feature_tensor(visual_dir / "face_features" / f"{clip_id}.pt", o.face_dim, len(names))
    objects = _feature_tensor(visual_dir / "object_features" / f"{clip_id}.pt", o.object_dim)
    environment = _feature_tensor(visual_dir / "environment_features" / f"{clip_id}.pt", o.environment_dim)
    for ii in range(segments):
        begin = int((record["seg_start"][ii] - record["start"]) * FPS)
        end = int((record["seg_end"][ii] - record["start"]) * FPS)
        in_segment = (frames >= begin) & (frames <= end)
        scene = [objects[max(begin, 0) : end], environment[max(begin, 0) : end]]
        if any(len(x) == 0 for x in scene):  # no frames to average (MEmoR would produce NaN)
            continue
        scene_mean = np.concatenate([x.mean(axis=0) for x in scene])
        for p, character in enumerate(persons):
            own = in_segment & (owners == SPEAKERS[character])
            if own.sum() > FACE_MIN:
                row = p * segments + ii
                out[row] = np.concatenate([faces[own].mean(axis=0), scene_mean])
                valid[row] = True
    return out, valid


def _parse_face_names(names: list[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """'<frame>_<person>.<ext>' -> frame indices (int [F]) and lower-case person names (str [F])."""
    frames, owners = [], []
    for name in names:
        parts = name[:-4].split("_")
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            raise DataError(f"{path}: face crop name {name!r} is not '<frame>_<person>.<ext>'")
        frames.append(int(parts[0]))
        owners.append(parts[1].lower())
    return np.array(frames), np.array(owners)


def _feature_tensor(path: Path, dim: int, rows: int | None = None) -> np.ndarray:
    value = load_tensor_file(path)
    if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[1] != dim or (rows is not None and value.shape[0] != rows):
        got = f"{tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        want = f"[{rows if rows is not None else 'n'}, {dim}]"
        raise DataError(f"{path}: expected a float tensor {want}, got {got}")
    array = value.float().numpy()
    if not np.isfinite(array).all():
        raise DataError(f"{path}: features contain NaN/inf")
    return array


def _target_segment(record: dict[str, Any], moment: float) -> int:
    """The segment with seg_start <= moment < seg_end; if none holds it, the nearest one (MEmoR marks no target)."""
    starts, ends = np.asarray(record["seg_start"], dtype=float), np.asarray(record["seg_end"], dtype=float)
    inside = (starts <= moment) & (moment < ends)
    if inside.any():
        return int(inside.argmax())
    return int(np.maximum(starts - moment, moment - ends).argmin())


def _read_personality(path: Path) -> np.ndarray:
    """float32 [8, P], each column L2-normalised across the characters (MEmoR: F.normalize(dim=0))."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a comma-separated table of numbers ({exc})") from None
    if table.shape[0] != len(SPEAKERS) or not np.isfinite(table).all():
        raise DataError(f"{path}: expected {len(SPEAKERS)} rows of finite personality values (one per character), got shape {table.shape}")
    norms = np.maximum(np.linalg.norm(table, axis=0, keepdims=True), 1e-12)
    return (table / norms).astype(np.float32)


# ------------------------------------------------------------------------------------------- feature JSON


def _key_filter(clips: set[str]) -> Callable[[str], bool]:
    return lambda key: key.rsplit("+", 1)[0] in clips


def _read_feature_json(path: Path, dim: int, keep: Callable[[str], bool]) -> dict[str, np.ndarray]:
    """{key: float32 [dim]} for the kept keys; the files are GBs, so they are parsed entry by entry."""
    out = {}
    for key, value in iter_json_object(path):
        if not keep(key):
            continue
        try:
            vector = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            vector = None
        if vector is None or vector.shape != (dim,) or not np.isfinite(vector).all():
            got = "non-numeric" if vector is None else f"shape {vector.shape}" + ("" if vector.shape != (dim,) else " with NaN/inf")
            raise DataError(f"{path}: entry '{key}' must be {dim} finite numbers, got {got}")
        out[key] = vector
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
