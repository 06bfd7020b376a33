import pytest
import torch

from mmer.errors import ConfigError
from mmer.nn.shuffle import label_shuffle, shuffle_indices, stack_interleave

B, M, C = 6, 3, 4


def reference_interleave(n, k):
    """Split into k contiguous stacks (larger first) and pop the tops round-robin."""
    k = max(1, min(k, n))
    sizes = [n // k + (1 if s < n % k else 0) for s in range(k)]
    stacks, start = [], 0
    for size in sizes:
        stacks.append(list(range(start, start + size)))
        start += size
    out = []
    while any(stacks):
        for stack in stacks:
            if stack:
                out.append(stack.pop(0))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 64])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 9])
def test_stack_interleave_matches_pop_and_append(n, k):
    assert stack_interleave(n, k).tolist() == reference_interleave(n, k)


def grid_sources(mode, seed=0, b=B, m=M, c=C, **kw):
    g = torch.Generator().manual_seed(seed)
    return shuffle_indices(b, m, c, mode, generator=g, **kw)


@pytest.mark.parametrize("mode", ["paper", "stack", "reverse"])
def test_sequential_modes_are_bijections_per_label(mode):
    for seed in range(5):
        s, k = grid_sources(mode, seed)
        for label in range(C):
            cells = set(zip(s[..., label].flatten().tolist(), k[..., label].flatten().tolist()))
            assert len(cells) == B * M  # every source (sample, modality) used exactly once


def test_carat_code_structure():
    s, k = grid_sources("carat_code")
    for label in range(C):
        for m in range(M):  # sample index: a permutation per (label, output modality slot)
            assert sorted(s[:, m, label].tolist()) == list(range(B))
        for b in range(B):  # modality index: a permutation per (label, output sample slot)
            assert sorted(k[b, :, label].tolist()) == list(range(M))
    repeats = 0
    for seed in range(20):
        s, k = grid_sources("carat_code", seed)
        for j in range(C):
            repeats += B * M - len(set(zip(s[..., j].flatten().tolist(), k[..., j].flatten().tolist())))
    assert repeats > 0  # not a permutation of the grid: sources repeat (carat ref §2.10)


def test_reverse_mode_is_the_official_no_op():
    s, k = grid_sources("reverse")
    assert torch.equal(s[:, 0, 0], torch.arange(B - 1, -1, -1)) and torch.equal(k[0, :, 0], torch.arange(M - 1, -1, -1))
    t = torch.randn(B, M, C, 2)
    y = (torch.rand(B, C) > 0.5).float()
    ts, ys = label_shuffle(t, y, "reverse")
    torch.testing.assert_close(ts, t.flip(0, 1))
    torch.testing.assert_close(ys, y.flip(0)[:, None, :].expand(B, M, C))


@pytest.mark.parametrize("mode", ["paper", "carat_code", "stack", "reverse"])
def test_every_feature_keeps_its_own_label(mode):
    b_idx = torch.arange(B)[:, None, None].expand(B, M, C)
    m_idx = torch.arange(M)[None, :, None].expand(B, M, C)
    l_idx = torch.arange(C)[None, None, :].expand(B, M, C)
    t = torch.stack([b_idx, m_idx, l_idx], -1).float()  # each feature encodes where it came from
    y = (torch.rand(B, C, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    ts, ys = label_shuffle(t, y, mode, generator=torch.Generator().manual_seed(2))
    src_b, src_m, src_l = ts.long().unbind(-1)
    assert torch.equal(src_l, l_idx)  # label slots never mix
    assert torch.equal(ys, y[src_b, src_l])
    s, k = shuffle_indices(B, M, C, mode, generator=torch.Generator().manual_seed(2))
    assert torch.equal(src_b, s) and torch.equal(src_m, k)


@pytest.mark.parametrize("mode", ["paper", "carat_code"])
def test_uniform_modes_draw_every_source_equally_and_independently_per_label(mode):
    b, m, c, draws = 4, 3, 2, 3000
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(b, m)
    same_sample = 0
    for _ in range(draws):
        s, k = shuffle_indices(b, m, c, mode, generator=g)
        counts[s[0, 0, 0], k[0, 0, 0]] += 1
        same_sample += int(s[0, 0, 0] == s[0, 0, 1])
    expected = draws / (b * m)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 35  # 11 degrees of freedom; p < 1e-3 above ~31.3
    assert abs(same_sample / draws - 1 / b) < 0.04  # labels 0 and 1 drawn independently


def test_stack_mode_recombines_labels_across_samples():
    s, _ = grid_sources("stack", b=64, m=3, c=6)
    rows_from_one_sample = (s == s[..., :1]).all(-1).float().mean()  # all labels of an output row share a sample
    assert rows_from_one_sample < 0.2
    assert not torch.equal(s[..., 0], s[..., 1])


def test_shuffle_is_reproducible_and_differentiable():
    t = torch.randn(B, M, C, 3, requires_grad=True)
    y = torch.ones(B, C)
    a, _ = label_shuffle(t, y, generator=torch.Generator().manual_seed(5))
    b, _ = label_shuffle(t, y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    a.sum().backward()
    torch.testing.assert_close(t.grad, torch.ones_like(t))  # paper mode is a bijection: each cell used once


def test_bad_mode_and_shapes():
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        shuffle_indices(2, 2, 2, "papers")
    with pytest.raises(ValueError, match=r"\[B, M, C, d\]"):
        label_shuffle(torch.randn(2, 3, 4), torch.ones(2, 4))


@pytest.mark.parametrize("mode", ["paper", "carat_code", "stack", "reverse"])
def test_sample_wise_or_modality_wise_shuffle_alone(mode):
    g = torch.Generator().manual_seed(3)
    s, k = shuffle_indices(8, 3, 5, mode, generator=g, modality_wise=False)
    assert torch.equal(k, torch.arange(3)[None, :, None].expand(8, 3, 5))  # modalities stay in place
    for label in range(5):
        for modality in range(3):
            assert sorted(s[:, modality, label].tolist()) == list(range(8))  # a permutation of the samples
    s, k = shuffle_indices(8, 3, 5, mode, generator=g, sample_wise=False)
    assert torch.equal(s, torch.arange(8)[:, None, None].expand(8, 3, 5))  # samples stay in place
    assert all(sorted(k[b, :, label].tolist()) == [0, 1, 2] for b in range(8) for label in range(5))
    if mode in ("paper", "carat_code"):
        assert not torch.equal(k[:, :, 0], k[:, :, 1])  # drawn per label
    s, k = shuffle_indices(8, 3, 5, mode, generator=g, sample_wise=False, modality_wise=False)
    assert torch.equal(s, torch.arange(8)[:, None, None].expand(8, 3, 5)) and torch.equal(k, torch.arange(3)[None, :, None].expand(8, 3, 5))


@pytest.mark.parametrize("mode", ["paper", "carat_code"])
def test_gradient_repeats_exactly_on_two_threads(mode):
    """carat_code reads some source cells twice; their gradients must still add up in the same order every time."""
    b, m, c, d = 64, 3, 6, 256
    t = torch.randn(b, m, c, d, generator=torch.Generator().manual_seed(0))
    y = (torch.rand(b, c, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    upstream = torch.randn(b, m, c, d, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(12):
            x = t.clone().requires_grad_()
            shuffled, _ = label_shuffle(x, y, mode, generator=torch.Generator().manual_seed(3))
            (shuffled * upstream).sum().backward()
            grads.append(x.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])
