"""Bayes oracles that know the generators' parameters: the `ceiling` (and `target_only`) reference points.

synth-dyadic (exact). p(e | x) ∝ p(e) Π_t Σ_{a ⊆ e} q^|a| (1-q)^(|e|-|a|) Π_m N(x_{m,t}; mean_m(a), σ_m²): every
label configuration e, every activation pattern a of a step, summed exactly.

synth-party (approximate: exact inference over a clip's coupled chains is exponential in the number of persons).
Each token's emotions e_i have the Gaussian likelihood of its present modalities and a Boltzmann prior whose bias
is linear in its parents' emotions (the same person's previous segment; the segment's speaker, for listeners).
1. `target_only`: every parent replaced by its population mean (by character and role), no other token's
   observations: the posterior of the target from its own modalities, personality and role alone.
2. `ceiling`: mean-field inference over the whole clip, started from step 1's posteriors of every token. A token's
   update uses its own likelihood, its parents' current means in its bias, and, for each child c (its own next
   segment; the listeners of a segment it speaks), e·(Aᵀm_c) − log Z(β_c + A e), with the child's other parent
   also at its mean. `SWEEPS` damped parallel sweeps. Because it is approximate the ceiling is an estimate of
   the best achievable score, not a strict bound; context='known' (the other tokens' true emotions given) is an
   upper reference.
Prediction: posterior marginal > 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from mmer.data.dataset import SplitData
from mmer.data.synthetic.dyadic import DyadicWorld
from mmer.data.synthetic.labels import ShiftedPartition, all_configs
from mmer.data.synthetic.party import LISTENER, SPEAKER, PartyGrid, PartyWorld, grid_from_split

SWEEPS = 6
DAMPING = 0.5
CHUNK_CLIPS = 256  # clips per oracle pass: about 150 MB of float64 work arrays


# ---------------------------------------------------------------------------------------------- synth-party


class PartyPosterior:
    """Posterior computations on one grid of clips; `means` arrays are [K, MAX_PERSONS, MAX_SEGMENTS, C]."""

    def __init__(self, world: PartyWorld, grid: PartyGrid, modalities: Sequence[str] | None = None):
        self.world, self.grid = world, grid
        labels = world.labels
        k = len(grid.valid)
        self.loglik = np.zeros((*grid.valid.shape, len(labels.configs)))  # [K, P, S, M]
        for m in list(grid.features) if modalities is None else modalities:
            self.loglik += grid.present[m][..., None] * world.emissions[m].loglik(grid.features[m], labels.configs)
        self.own_bias = world.bias(grid.personality)  # [K, P, C]
        self.is_speaker = grid.is_speaker()  # [K, P, S]
        self.is_listener = grid.valid & ~self.is_speaker & (grid.speaker >= 0)[:, None, :]
        self.rows = np.arange(k)[:, None]
        self.speaker = grid.speaker.clip(0)  # [K, S]
        self.segments = np.arange(grid.valid.shape[2])
        self.character = np.linalg.norm(grid.personality[:, :, None] - world.personalities, axis=-1).argmin(-1)
        self.inertia_partition = labels.shifted_partition(world.inertia)
        self.contagion_partition = labels.shifted_partition(world.contagion)

    def population_means(self) -> np.ndarray:
        """Every token at its character's mean emotions in its role: the context-free stand-in for parents."""
        role = np.where(self.is_speaker, SPEAKER, LISTENER)
        means = self.world.population_mean[self.character[:, :, None], role]  # [K, P, S, C]
        return means * self.grid.valid[..., None]

    def _parent_terms(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inertia term, contagion term) of every token's bias, each [K, P, S, C]."""
        inertia = np.zeros_like(means)
        inertia[:, :, 1:] = means[:, :, :-1] @ self.world.inertia.T
        speaker_means = means[self.rows, self.speaker, self.segments]  # [K, S, C]
        contagion = self.is_listener[..., None] * (speaker_means @ self.world.contagion.T)[:, None]
        return inertia, contagion

    def logits(self, means: np.ndarray, children: bool) -> np.ndarray:
        """Log-weights [K, P, S, M] of each token's configurations with every other token at `means`."""
        inertia, contagion = self._parent_terms(means)
        bias = self.own_bias[:, :, None] + inertia + contagion  # [K, P, S, C]
        logits = self.loglik + self.world.labels.logits(bias)
        if not children:
            return logits
        # inertia child: (k, p, s + 1) of parent (k, p, s); its other parent is its segment's speaker
        k, p, s = np.nonzero(self.grid.valid[:, :, 1:])
        beta = self.own_bias[k, p] + contagion[k, p, s + 1]
        logits[k, p, s] += self._child_term(means[k, p, s + 1], beta, self.world.inertia, self.inertia_partition)
        # contagion child: listener (k, q, s) of the speaker (k, spk, s); its other parent is its own past.
        # A speaker has several listeners: sum their terms over persons before adding them to the speaker.
        k, q, s = np.nonzero(self.is_listener)
        beta = self.own_bias[k, q] + inertia[k, q, s]
        per_listener = np.zeros_like(logits)
        per_listener[k, q, s] = self._child_term(means[k, q, s], beta, self.world.contagion, self.contagion_partition)
        logits[self.rows, self.speaker, self.segments] += per_listener.sum(axis=1)  # [K, S, M] onto each segment's speaker
        return logits

    def _child_term(self, child_mean: np.ndarray, beta: np.ndarray, shift: np.ndarray, partition: ShiftedPartition) -> np.ndarray:
        """[n, M]: E_q[log p(child | parent = e)] up to constants, for each parent configuration e."""
        linear = (child_mean @ shift) @ self.world.labels.configs.T  # e·(Aᵀ m_child)
        return linear - partition(beta)

    def marginals(self, logits: np.ndarray) -> np.ndarray:
        return self.world.labels.marginals(logits) * self.grid.valid[..., None]

    def target_only(self) -> np.ndarray:
        """[K, P, S, C] posterior marginals of every token from its own observations and role."""
        return self.marginals(self.logits(self.population_means(), children=False))

    def mean_field(self, sweeps: int = SWEEPS, damping: float = DAMPING) -> np.ndarray:
        """[K, P, S, C] posterior marginals with the whole clip as context (damped parallel mean-field)."""
        means = self.target_only()
        for _ in range(sweeps):
            update = self.marginals(self.logits(means, children=True))
            means = (1 - damping) * means + damping * update
        return self.marginals(self.logits(means, children=True))

    def conditional(self, emotions: np.ndarray) -> np.ndarray:
        """[K, P, S, C] exact p(e_i = 1 | x_i, every other token's true emotions) (an upper reference)."""
        return self.marginals(self.logits(emotions.astype(np.float64), children=True))


# The matrix products here are small ([n, M] x [M, M], M <= 511): BLAS threads cost more than they save (several
# times the CPU time on a busy machine), so the public entry points run BLAS on one thread.
@threadpool_limits.wrap(limits=1, user_api="blas")
def party_posterior(
    world: PartyWorld, split: SplitData, context: str = "inferred", modalities: Sequence[str] | None = None,
    emotions: np.ndarray | None = None,
) -> np.ndarray:
    """[N, C] posterior probability of each label for every sample of `split`.

    context: 'none' (target_only), 'inferred' (ceiling: mean-field over the clip) or 'known' (the true emotions
    of every other token, `emotions` [K, MAX_PERSONS, MAX_SEGMENTS, C], must be given).
    """
    if context not in ("none", "inferred", "known"):
        raise ValueError(f"context must be 'none', 'inferred' or 'known', got {context!r}")
    if context == "known" and emotions is None:
        raise ValueError("context='known' needs the true emotions")
    grid, cells = grid_from_split(split)
    marginals = np.zeros((*grid.valid.shape, world.labels.num_labels))
    for start in range(0, len(grid.valid), CHUNK_CLIPS):  # clips are independent; chunks bound the memory
        rows = slice(start, start + CHUNK_CLIPS)
        posterior = PartyPosterior(world, grid.clips(rows), modalities)
        if context == "none":
            marginals[rows] = posterior.target_only()
        elif context == "inferred":
            marginals[rows] = posterior.mean_field()
        else:
            marginals[rows] = posterior.conditional(emotions[rows])
    return marginals[cells[:, 0], cells[:, 1], cells[:, 2]]


# --------------------------------------------------------------------------------------------- synth-dyadic


@threadpool_limits.wrap(limits=1, user_api="blas")
def dyadic_posterior(
    world: DyadicWorld,
    split: SplitData,
    modalities: Sequence[str] | None = None,
    fusion: str = "joint",
    evidence: str = "sum",
) -> np.ndarray:
    """[N, C] posterior probability of each label.

    fusion: 'joint' (exact: a step's activation pattern is shared by its modalities) or 'late' (each modality's
    likelihood p(x_m | e) marginalises its own activations, and the modalities are multiplied as if independent
    given e: the best a model can do that never lines up the modalities' steps).
    evidence: 'sum' (exact: the steps' log-likelihoods add up) or 'mean' (their average, times the split's mean
    real length: what a model that mean-pools per-step evidence can know; used to check whether pooling by the
    mean costs anything on this benchmark).
    """
    if fusion not in ("joint", "late"):
        raise ValueError(f"fusion must be 'joint' or 'late', got {fusion!r}")
    if evidence not in ("sum", "mean"):
        raise ValueError(f"evidence must be 'sum' or 'mean', got {evidence!r}")
    labels, q = world.labels, world.activation
    configs = labels.configs  # [M, C] label configurations e
    patterns = all_configs(labels.num_labels, include_empty=True)  # [A, C] activation patterns a of one step
    inside = (patterns[None, :, :] <= configs[:, None, :]).all(axis=-1)  # [M, A]: a ⊆ e
    on, total = patterns.sum(axis=1)[None, :], configs.sum(axis=1)[:, None]
    weight = np.where(inside, q**on * (1 - q) ** (total - on), 0.0)  # [M, A] p(a | e)
    rows = split.clip_index.numpy()
    real = split.masks[next(iter(split.masks))].numpy()[rows][:, :, None]  # [N, L, 1]
    lengths = real.sum(axis=1)  # [N, 1]
    scale = lengths.mean() / lengths if evidence == "mean" else 1.0  # [N, 1] or scalar

    def sequence_loglik(step_loglik: np.ndarray) -> np.ndarray:
        """[N, L, A] log p(x_t | a) -> [N, M] sum over real steps of log sum_a p(a | e) p(x_t | a)."""
        top = step_loglik.max(axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            per_step = np.log(np.exp(step_loglik - top) @ weight.T) + top  # [N, L, M]
        return np.where(real, per_step, 0.0).sum(axis=1) * scale

    per_modality = [
        world.emissions[m].loglik(split.features[m].numpy()[rows].astype(np.float64), patterns)  # [N, L, A]
        for m in (list(split.features) if modalities is None else modalities)
    ]
    if fusion == "joint":
        loglik = sequence_loglik(sum(per_modality))
    else:
        loglik = sum(sequence_loglik(step) for step in per_modality)
    return labels.marginals(loglik + labels.logits(world.base_bias))
