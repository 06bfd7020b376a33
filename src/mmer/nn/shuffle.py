"""Label-wise shuffles of stacked label-specific features (CARAT Eq. 11-12, RAMer §4.3 "stack shuffle").

Input T [B, M, C, d] (sample, modality, label, feature) and multi-hot y [B, C]. Every mode returns source indices
sample_idx[b, m, l] and modality_idx[b, m, l] and

    T~[b, m, l] = T[sample_idx[b, m, l], modality_idx[b, m, l], l]        y~[b, m, l] = y[sample_idx[b, m, l], l]

so each shuffled label vector keeps its own label (labels never move between label slots). All index
construction is vectorised (argsort of uniform noise; no Python loop over samples or labels).

Modes:
- "paper" (CARAT paper, default): sequential and bijective. Per (label l, modality m) an independent sample
  permutation pi_{l,m} (Eq. 11: "on each modality"), then per (label l, sample b) an independent modality
  permutation sigma_{l,b} (Eq. 12) applied to the result:
      T~[b, m, l] = T1[b, sigma_{l,b}(m), l] with T1[b, m', l] = T[pi_{l,m'}(b), m', l].
  For every label each source cell (b', m') is used exactly once.
- "carat_code": the official CARAT indexing (carat ref §2.10): the same two kinds of permutation but applied in
  one fused step, pi indexed by the *output* modality slot: T~[b, m, l] = T[pi_{l,m}(b), sigma_{l,b}(m), l].
  Not a permutation of the (sample, modality) grid: sources repeat or are skipped.
- "stack" (RAMer paper §4.3, our precise reading): the same sequential structure as "paper" but with
  stack-interleave permutations instead of uniform ones. `stack_interleave(n, k)`: cut the list into k contiguous
  stacks (sizes differ by at most one, larger first) and pop the tops round-robin (stack 0, 1, ..., k-1, 0, ...,
  skipping empty stacks) into a new list. One shuffle round = rotate the list by a random offset o, then
  interleave: new[i] = old[(inter[i] + o) mod n]. `iterations` rounds, each with its own offset, drawn
  independently per (label, modality) for samples and per (label, sample) for modalities — so different labels
  of one output row come from different samples, which is what makes it a recombination. With k = M modality
  stacks the modality interleave is the identity and the modality shuffle is a random rotation.
- "reverse" (RAMer's official code, for parity only): the code's `stack_shuffle` returns the list sorted in
  descending order, i.e. T~[b, m] = T[B-1-b, M-1-m] for every label — an existing row, not an augmentation.

`sample_wise=False` / `modality_wise=False` replace the sample (pi) / modality (sigma) permutation by the identity
in any mode (the ablations "w/o sample-wise shuffle" and "w/o modality-wise shuffle" of CARAT Table 3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mmer.errors import ConfigError, unknown_name

ShuffleMode = Literal["paper", "carat_code", "stack", "reverse"]
SHUFFLE_MODES = ("paper", "carat_code", "stack", "reverse")


def stack_interleave(n: int, stacks: int, device: torch.device | str | None = None) -> Tensor:
    """Source index at each output position [n] of one stack interleave (see the module docstring).

    Example: n=7, stacks=3 -> stacks [0 1 2] [3 4] [5 6] -> [0, 3, 5, 1, 4, 6, 2].
    """
    k = max(1, min(stacks, n))
    sizes = torch.full((k,), n // k, dtype=torch.long, device=device)
    sizes[: n % k] += 1
    starts = torch.cumsum(sizes, 0) - sizes  # [k]
    item = torch.arange(n, device=device)
    stack = torch.searchsorted(starts, item, right=True) - 1  # [n] which stack each item is in
    depth = item - starts[stack]  # [n] position from the top of its stack
    popped_before = torch.minimum(sizes[None, :], depth[:, None]).sum(1)  # items taken in earlier rounds
    ahead = ((torch.arange(k, device=device)[None, :] < stack[:, None]) & (sizes[None, :] > depth[:, None])).sum(1)
    rank = popped_before + ahead  # [n] output position of each item
    return torch.argsort(rank)


def _uniform_permutations(shape: tuple[int, ...], n: int, generator: torch.Generator | None, device: torch.device | None) -> Tensor:
    """Independent uniform permutations of range(n): [*shape, n] (argsort of uniform noise)."""
    return torch.argsort(torch.rand(*shape, n, generator=generator, device=device), dim=-1)


def _stack_permutations(
    shape: tuple[int, ...], n: int, stacks: int, iterations: int, generator: torch.Generator | None, device: torch.device | None
) -> Tensor:
    """[*shape, n] permutations, each the composition of `iterations` rotate-then-interleave rounds."""
    inter = stack_interleave(n, stacks, device)  # [n]
    perm = torch.arange(n, device=device).expand(*shape, n)
    for _ in range(iterations):  # a fixed, small number of rounds
        offset = torch.randint(n, (*shape, 1), generator=generator, device=device)
        perm = torch.gather(perm, -1, (inter + offset) % n)  # new[i] = old[(inter[i] + o) mod n]
    return perm


def shuffle_indices(
    batch_size: int,
    num_modalities: int,
    num_labels: int,
    mode: ShuffleMode = "paper",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    sample_stacks: int = 4,
    modality_stacks: int | None = None,
    iterations: int = 2,
    sample_wise: bool = True,
    modality_wise: bool = True,
) -> tuple[Tensor, Tensor]:
    """(sample_idx, modality_idx), each long [B, M, C]: the source of every output cell (see module docstring).

    `sample_stacks`, `modality_stacks` (default M) and `iterations` apply to mode "stack" (RAMer code: 4, 3, 2).
    `sample_wise` / `modality_wise` = False keep samples / modalities in place (identity pi / sigma).
    """
    if mode not in SHUFFLE_MODES:
        raise ConfigError(unknown_name("shuffle mode", mode, SHUFFLE_MODES))
    b, m, c = batch_size, num_modalities, num_labels
    if mode == "reverse":
        s = torch.arange(b - 1, -1, -1, device=device) if sample_wise else torch.arange(b, device=device)
        k = torch.arange(m - 1, -1, -1, device=device) if modality_wise else torch.arange(m, device=device)
        return s[:, None, None].expand(b, m, c), k[None, :, None].expand(b, m, c)
    if mode == "stack":
        pi = _stack_permutations((c, m), b, sample_stacks, iterations, generator, device)  # [C, M, B]
        sigma = _stack_permutations((c, b), m, modality_stacks or m, iterations, generator, device)  # [C, B, M]
    else:
        pi = _uniform_permutations((c, m), b, generator, device)  # [C, M, B]: pi[l, m, b] = pi_{l,m}(b)
        sigma = _uniform_permutations((c, b), m, generator, device)  # [C, B, M]: sigma[l, b, m] = sigma_{l,b}(m)
    if not sample_wise:
        pi = torch.arange(b, device=device).expand(c, m, b)
    if not modality_wise:
        sigma = torch.arange(m, device=device).expand(c, b, m)
    modality_idx = sigma.permute(1, 2, 0)  # [B, M, C]
    if mode == "carat_code":
        sample_idx = pi.permute(2, 1, 0)  # [B, M, C]: pi_{l,m}(b), indexed by the output modality slot
    else:  # sequential: the sample permutation of the modality the cell is taken from
        pi_bml = pi.permute(2, 1, 0)  # [B, M(source), C]
        sample_idx = torch.gather(pi_bml, 1, modality_idx)  # pi_{l, sigma_{l,b}(m)}(b)
    return sample_idx, modality_idx


def apply_shuffle(features: Tensor, labels: Tensor, sample_idx: Tensor, modality_idx: Tensor) -> tuple[Tensor, Tensor]:
    """T [B, M, C, d], y [B, C] and source indices [B, M, C] -> (T~ [B, M, C, d], y~ [B, M, C])."""
    b, m, c, d = features.shape
    label_idx = torch.arange(c, device=features.device).expand(b, m, c)
    # rows of the flattened [B*M*C, d] grid, read with index_select rather than `features[sample_idx, ...]`:
    # index_select's backward (index_add_) repeats exactly on CPU threads; indexing's (index_put_ with
    # accumulation) does not when a source cell is read twice, as in "carat_code"
    rows = (sample_idx * m + modality_idx) * c + label_idx  # [B, M, C]
    shuffled = features.reshape(b * m * c, d).index_select(0, rows.reshape(-1)).reshape(b, m, c, d)
    return shuffled, labels[sample_idx, label_idx]


def label_shuffle(
    features: Tensor,
    labels: Tensor,
    mode: ShuffleMode = "paper",
    *,
    generator: torch.Generator | None = None,
    sample_stacks: int = 4,
    modality_stacks: int | None = None,
    iterations: int = 2,
    sample_wise: bool = True,
    modality_wise: bool = True,
) -> tuple[Tensor, Tensor]:
    """Shuffle T [B, M, C, d] with labels y [B, C] -> (T~ [B, M, C, d], y~ [B, M, C]); gradient flows to T."""
    if features.dim() != 4 or labels.shape != (features.shape[0], features.shape[2]):
        raise ValueError(
            f"label_shuffle expects T [B, M, C, d] and y [B, C], got {tuple(features.shape)}, {tuple(labels.shape)}"
        )
    b, m, c, _ = features.shape
    idx = shuffle_indices(
        b,
        m,
        c,
        mode,
        generator=generator,
        device=features.device,
        sample_stacks=sample_stacks,
        modality_stacks=modality_stacks,
        iterations=iterations,
        sample_wise=sample_wise,
        modality_wise=modality_wise,
    )
    return apply_shuffle(features, labels, *idx)
