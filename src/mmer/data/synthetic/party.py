"""synth-party: MEmoR-like multi-party clips with personality, emotional inertia and contagion.

Generative process of one clip (all clips are drawn together, vectorised over clips and persons):
1. 2-4 of the 8 characters take part (probabilities `PERSONS_PROBS`), the clip has 3-6 semantic segments and
   one speaker per segment; the speaker changes at every segment (turn taking).
2. Emotions, segment by segment, from the exact Boltzmann distribution of `labels.py` with the bias
       b = base + G·personality                  (each character's base rates)
         + inertia · e(same person, previous segment)
         + contagion · e(this segment's speaker)   (listeners only)
   The speaker's emotions are drawn first, then the listeners'.
3. Observations per token (person, segment) and modality: `Emission` of the token's emotions. The speaker has
   text, audio (lost with probability `SPEAKER_AUDIO_LOSS`) and visual when the face is visible; listeners only
   ever have visual, when their face is visible. A token may have nothing at all: then only context helps.
4. The annotated moment is one segment per clip; every person of the clip at that segment is a sample.

Tokens are laid out person-major like MEmoR's rows: token t = person · S + segment, S = the clip's segments.
`PartyGrid` is the dense [K, person, segment] view that the generator writes and the oracle reads back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from mmer.data.dataset import SplitData
from mmer.data.synthetic.emission import Emission
from mmer.data.synthetic.labels import LabelModel, coupling_matrix

EMOTIONS = ("neutral", "joy", "anger", "disgust", "sadness", "surprise", "fear", "anticipation", "trust")
MODALITIES = ("text", "visual", "audio")
DIMS = {"text": 32, "visual": 24, "audio": 16}
NUM_CHARACTERS = 8
PERSONALITY_DIM = 16
MAX_PERSONS = 4
MAX_SEGMENTS = 6
MIN_SEGMENTS = 3
PERSONS_PROBS = {2: 0.3, 3: 0.4, 4: 0.3}
SPEAKER_AUDIO_LOSS = 0.1
SPEAKER_FACE = 0.8  # probability a speaker's face is visible in a segment
LISTENER_FACE = 0.55  # probability a listener's face is visible in a segment
WORLD_SEED = 20_201  # the world (characters, patterns) is fixed per preset; --seed only redraws the clips

BASE_BIAS = {
    "neutral": 0.3, "joy": -1.8, "anger": -2.6, "disgust": -2.8, "sadness": -2.6,
    "surprise": -2.8, "fear": -3.0, "anticipation": -2.5, "trust": -2.5,
}
PERSONALITY_SCALE = 0.8  # std of a character's personality-driven offset of each label's bias
INERTIA = 2.0  # added to the bias of every label the same person felt in the previous segment
COUPLING = {  # J: > 0 co-occur, < 0 exclude each other
    **{("neutral", e): -2.5 for e in EMOTIONS[1:]},
    ("joy", "trust"): 1.2, ("joy", "anticipation"): 0.8, ("anticipation", "trust"): 0.6, ("joy", "surprise"): 0.6,
    ("anger", "disgust"): 1.5, ("sadness", "fear"): 1.0, ("surprise", "fear"): 1.0, ("anger", "sadness"): 0.3,
    ("joy", "anger"): -1.5, ("joy", "sadness"): -1.5, ("joy", "disgust"): -1.2, ("joy", "fear"): -0.8,
    ("trust", "disgust"): -1.0, ("trust", "anger"): -1.0, ("trust", "fear"): -0.5,
}
CONTAGION = {  # (listener feels, speaker feels): added to the listener's bias
    ("neutral", "neutral"): 1.6, ("joy", "joy"): 2.4, ("trust", "joy"): 1.2, ("sadness", "sadness"): 2.0,
    ("anger", "anger"): 1.2, ("fear", "anger"): 2.0, ("disgust", "anger"): 1.0, ("surprise", "surprise"): 2.0,
    ("fear", "fear"): 1.6, ("surprise", "fear"): 1.0, ("anticipation", "anticipation"): 1.6, ("trust", "trust"): 1.2,
}
STRENGTH = {  # signal amplitude of each emotion per modality: each label has a modality it shows best in
    #              neu  joy  ang  dis  sad  sur  fea  ant  tru
    "text":   (0.6, 0.6, 0.4, 0.3, 1.2, 0.3, 0.3, 1.2, 1.2),
    "visual": (0.6, 1.2, 0.4, 1.2, 0.5, 0.8, 0.4, 0.2, 0.3),
    "audio":  (0.6, 0.4, 1.2, 0.3, 0.4, 0.8, 1.2, 0.3, 0.2),
}
NOISE = {"text": 0.35, "visual": 0.35, "audio": 0.35}

SPEAKER, LISTENER = 0, 1


@dataclass(frozen=True)
class PartyWorld:
    """Every parameter of the synth-party generator (what the oracle knows)."""

    labels: LabelModel
    emissions: dict[str, Emission]
    personalities: np.ndarray  # [NUM_CHARACTERS, P]
    personality_weights: np.ndarray  # [C, P] G
    base_bias: np.ndarray  # [C]
    inertia: np.ndarray  # [C, C] added to the bias: inertia @ e(previous segment)
    contagion: np.ndarray  # [C, C] listener bias += contagion @ e(speaker)

    @functools.cached_property
    def population_mean(self) -> np.ndarray:
        """[NUM_CHARACTERS, 2 (speaker, listener), C] E[e] by character and role, from 1500 fixed-seed clips.

        The oracle's context-free stand-in for a token's parents (`target_only`).
        """
        draw = sample_clips(self, 1500, np.random.default_rng(0))
        speaker = draw.grid.is_speaker()
        out = np.zeros((NUM_CHARACTERS, 2, len(EMOTIONS)))
        for role, cells in ((SPEAKER, speaker), (LISTENER, draw.grid.valid & ~speaker)):
            k, p, s = np.nonzero(cells)
            chars = draw.character[k, p]
            sums = np.zeros((NUM_CHARACTERS, len(EMOTIONS)))
            np.add.at(sums, chars, draw.emotions[k, p, s])
            out[:, role] = sums / np.bincount(chars, minlength=NUM_CHARACTERS)[:, None]
        return out

    def bias(self, personality: np.ndarray) -> np.ndarray:
        """personality [..., P] -> bias without context [..., C]."""
        return self.base_bias + personality @ self.personality_weights.T


@dataclass
class PartyGrid:
    """K clips on a dense (person, segment) grid; cells beyond a clip's persons/segments are invalid."""

    valid: np.ndarray  # bool [K, MAX_PERSONS, MAX_SEGMENTS]
    speaker: np.ndarray  # int [K, MAX_SEGMENTS], -1 where the segment does not exist
    personality: np.ndarray  # float [K, MAX_PERSONS, P]
    present: dict[str, np.ndarray]  # modality -> bool [K, MAX_PERSONS, MAX_SEGMENTS]
    features: dict[str, np.ndarray]  # modality -> float [K, MAX_PERSONS, MAX_SEGMENTS, D] (0 where absent)

    @property
    def num_persons(self) -> np.ndarray:
        return self.valid[:, :, 0].sum(axis=1)

    @property
    def num_segments(self) -> np.ndarray:
        return self.valid[:, 0, :].sum(axis=1)

    def clips(self, rows: slice) -> PartyGrid:
        """The grid of clips `rows` only."""
        return PartyGrid(
            self.valid[rows], self.speaker[rows], self.personality[rows],
            {m: x[rows] for m, x in self.present.items()}, {m: x[rows] for m, x in self.features.items()},
        )

    def is_speaker(self) -> np.ndarray:
        """bool [K, MAX_PERSONS, MAX_SEGMENTS]."""
        return self.valid & (np.arange(MAX_PERSONS)[None, :, None] == self.speaker[:, None, :])


@dataclass
class PartyClips:
    """What the generator drew: the observable grid plus the latent truth."""

    grid: PartyGrid
    character: np.ndarray  # int [K, MAX_PERSONS], -1 for absent persons
    emotions: np.ndarray  # bool [K, MAX_PERSONS, MAX_SEGMENTS, C] (False on invalid cells)
    moment: np.ndarray  # int [K], the annotated segment


@functools.cache
def party_world() -> PartyWorld:
    rng = np.random.default_rng(WORLD_SEED)
    labels = LabelModel(EMOTIONS, coupling_matrix(EMOTIONS, COUPLING))
    emissions = {
        m: Emission.random(rng, np.asarray(STRENGTH[m]), DIMS[m], NOISE[m]) for m in MODALITIES
    }
    personalities = rng.standard_normal((NUM_CHARACTERS, PERSONALITY_DIM))
    weights = rng.standard_normal((len(EMOTIONS), PERSONALITY_DIM)) * PERSONALITY_SCALE / np.sqrt(PERSONALITY_DIM)
    return PartyWorld(
        labels=labels,
        emissions=emissions,
        personalities=personalities,
        personality_weights=weights,
        base_bias=np.array([BASE_BIAS[e] for e in EMOTIONS]),
        inertia=INERTIA * np.eye(len(EMOTIONS)),
        contagion=directed_matrix(CONTAGION),
    )


def directed_matrix(entries: dict[tuple[str, str], float]) -> np.ndarray:
    """[C, C] with [row label, column label] = value (not symmetric)."""
    index = {e: i for i, e in enumerate(EMOTIONS)}
    matrix = np.zeros((len(EMOTIONS), len(EMOTIONS)))
    for (row, col), value in entries.items():
        matrix[index[row], index[col]] = value
    return matrix


def sample_clips(world: PartyWorld, num_clips: int, rng: np.random.Generator) -> PartyClips:
    k, c = num_clips, world.labels.num_labels
    persons = rng.choice(list(PERSONS_PROBS), size=k, p=list(PERSONS_PROBS.values()))
    segments = rng.integers(MIN_SEGMENTS, MAX_SEGMENTS + 1, size=k)
    person_ok = np.arange(MAX_PERSONS)[None, :] < persons[:, None]  # [K, P]
    segment_ok = np.arange(MAX_SEGMENTS)[None, :] < segments[:, None]  # [K, S]
    valid = person_ok[:, :, None] & segment_ok[:, None, :]
    character = np.where(person_ok, np.argsort(rng.random((k, NUM_CHARACTERS)), axis=1)[:, :MAX_PERSONS], -1)
    personality = world.personalities[character.clip(0)] * person_ok[:, :, None]

    # speaker turns: a random first speaker, then always someone else
    steps = rng.integers(1, persons[:, None], size=(k, MAX_SEGMENTS))
    steps[:, 0] = rng.integers(0, persons)
    speaker = np.where(segment_ok, np.cumsum(steps, axis=1) % persons[:, None], -1)

    rows = np.arange(k)
    own = world.bias(personality)  # [K, P, C]
    emotions = np.zeros((k, MAX_PERSONS, MAX_SEGMENTS, c), dtype=bool)
    for s in range(MAX_SEGMENTS):  # segments are causal: each depends on the previous one
        bias = own + (emotions[:, :, s - 1] @ world.inertia.T if s else 0.0)  # [K, P, C]
        spk = speaker[:, s].clip(0)
        spk_emotions = world.labels.sample(bias[rows, spk], rng)  # [K, C]
        listener_bias = bias + (spk_emotions @ world.contagion.T)[:, None, :]
        cell = world.labels.sample(listener_bias.reshape(-1, c), rng).reshape(k, MAX_PERSONS, c)
        cell[rows, spk] = spk_emotions
        emotions[:, :, s] = cell & valid[:, :, s, None]

    is_speaker = valid & (np.arange(MAX_PERSONS)[None, :, None] == speaker[:, None, :])
    face = rng.random(valid.shape) < np.where(is_speaker, SPEAKER_FACE, LISTENER_FACE)
    present = {
        "text": is_speaker,
        "visual": valid & face,
        "audio": is_speaker & (rng.random(valid.shape) >= SPEAKER_AUDIO_LOSS),
    }
    features = {m: world.emissions[m].sample(emotions, rng) * present[m][..., None] for m in MODALITIES}
    moment = rng.integers(0, segments)
    grid = PartyGrid(valid, speaker, personality, present, features)
    return PartyClips(grid, character, emotions, moment)


def to_split(clips: PartyClips, split: str) -> SplitData:
    """Token grid per clip (person-major rows) and one sample per person at the clip's moment."""
    grid = clips.grid
    k = len(grid.valid)
    t_max = MAX_PERSONS * MAX_SEGMENTS
    segments = grid.num_segments
    ck, cp, cs = np.nonzero(grid.valid)  # every real (clip, person, segment) cell
    ct = cp * segments[ck] + cs  # its token
    person = np.full((k, t_max), -1, dtype=np.int64)
    segment = np.full((k, t_max), -1, dtype=np.int64)
    person[ck, ct], segment[ck, ct] = cp, cs
    personality = np.zeros((k, t_max, PERSONALITY_DIM), dtype=np.float32)
    personality[ck, ct] = grid.personality[ck, cp]
    features, masks = {}, {}
    for m in MODALITIES:
        x = np.zeros((k, t_max, DIMS[m]), dtype=np.float32)
        mask = np.zeros((k, t_max), dtype=bool)
        x[ck, ct] = grid.features[m][ck, cp, cs]
        mask[ck, ct] = grid.present[m][ck, cp, cs]
        features[m], masks[m] = torch.from_numpy(x), torch.from_numpy(mask)

    sk, sp = np.nonzero(grid.valid[:, :, 0])  # samples: every person of every clip, at the clip's moment
    moment = clips.moment[sk]
    target = np.zeros((len(sk), t_max), dtype=bool)
    target[np.arange(len(sk)), sp * segments[sk] + moment] = True
    return SplitData(
        features=features,
        masks=masks,
        labels=torch.from_numpy(clips.emotions[sk, sp, moment].astype(np.float32)),
        ids=[f"{split}-{a:05d}-p{b}-s{c}" for a, b, c in zip(sk.tolist(), sp.tolist(), moment.tolist())],
        clip_index=torch.from_numpy(sk.astype(np.int64)),
        personality=torch.from_numpy(personality),
        person=torch.from_numpy(person),
        segment=torch.from_numpy(segment),
        target=torch.from_numpy(target),
    )


def grid_from_split(split: SplitData) -> tuple[PartyGrid, np.ndarray]:
    """Rebuild the dense grid from stored tokens (what the oracle sees) and each sample's (clip, person, segment).

    The speaker of a segment is the person whose token has text (speakers always have text here).
    """
    assert split.person is not None and split.segment is not None and split.target is not None
    person, segment = split.person.numpy(), split.segment.numpy()
    k = person.shape[0]
    ck, ct = np.nonzero(person >= 0)
    cp, cs = person[ck, ct], segment[ck, ct]
    valid = np.zeros((k, MAX_PERSONS, MAX_SEGMENTS), dtype=bool)
    valid[ck, cp, cs] = True
    present, features = {}, {}
    for m, x in split.features.items():
        present[m] = np.zeros_like(valid)
        present[m][ck, cp, cs] = split.masks[m].numpy()[ck, ct]
        features[m] = np.zeros((*valid.shape, x.shape[-1]))
        features[m][ck, cp, cs] = x.numpy()[ck, ct]
    speaker = np.full((k, MAX_SEGMENTS), -1, dtype=np.int64)
    text = present["text"]
    tk, tp, ts = np.nonzero(text)
    speaker[tk, ts] = tp
    personality = np.zeros((k, MAX_PERSONS, split.personality.shape[-1] if split.personality is not None else 0))
    if split.personality is not None:
        personality[ck, cp] = split.personality.numpy()[ck, ct]
    clip = split.clip_index.numpy()
    token = split.target.numpy().argmax(axis=1)
    cells = np.stack([clip, person[clip, token], segment[clip, token]], axis=1)  # [N, 3]
    return PartyGrid(valid, speaker, personality, present, features), cells
