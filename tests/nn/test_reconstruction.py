import pytest
import torch

from mmer.errors import ConfigError
from mmer.nn.reconstruction import LatentAutoencoders, TwoLevelReconstruction


def test_autoencoders_shapes_and_layer_sizes():
    torch.manual_seed(0)
    ae = LatentAutoencoders(num_modalities=3, hidden_size=16, latent_size=4)
    x = torch.randn(2, 3, 5, 16)
    z = ae.encode(x)
    assert z.shape == (2, 3, 5, 4) and ae.decode(z).shape == x.shape
    enc = ae.encoders[1]
    assert [type(m).__name__ for m in enc] == ["Linear", "ReLU", "Linear"]
    assert (enc[0].in_features, enc[0].out_features, enc[2].out_features) == (16, 8, 4)
    torch.testing.assert_close(z[:, 1], enc(x[:, 1]))  # modality m uses its own encoder
    with pytest.raises(ValueError, match="modalities"):
        ae.encode(torch.randn(2, 2, 5, 16))


def _manual(rec: TwoLevelReconstruction, u, r, order):
    m_count = u.shape[1]
    alpha = torch.stack(
        [rec.networks[m](torch.cat([u[:, k] if k == m else r[:, k] for k in order], -1)) for m in range(m_count)], 1
    )
    fused = torch.cat([alpha[:, k] for k in order], -1)
    beta = torch.stack([rec.networks[m](fused) for m in range(m_count)], 1)
    return alpha, beta


@pytest.mark.parametrize("m_count,order", [(3, None), (3, [1, 0, 2]), (2, None), (4, [3, 1, 0, 2])])
def test_two_level_reconstruction_slots(m_count, order):
    torch.manual_seed(0)
    rec = TwoLevelReconstruction(m_count, hidden_size=6, slot_order=order)
    u, r = torch.randn(2, m_count, 3, 6), torch.randn(2, m_count, 3, 6)
    alpha, beta = rec(u, r)
    ea, eb = _manual(rec, u, r, order or list(range(m_count)))
    torch.testing.assert_close(alpha, ea)
    torch.testing.assert_close(beta, eb)


def test_official_three_modality_layout():
    """alpha_t = g_t([u_t; r_v; r_a]), alpha_v = g_v([r_t; u_v; r_a]), beta_m = g_m([alpha_t; alpha_v; alpha_a])."""
    torch.manual_seed(0)
    rec = TwoLevelReconstruction(3, hidden_size=4)
    assert len(rec.networks) == 3 and rec.networks[0].in_features == 12 and rec.networks[0].out_features == 4
    u, r = torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4)
    alpha, beta = rec(u, r)
    g_t, g_v = rec.networks[0], rec.networks[1]
    torch.testing.assert_close(alpha[:, 0], g_t(torch.cat([u[:, 0], r[:, 1], r[:, 2]], -1)))
    torch.testing.assert_close(alpha[:, 1], g_v(torch.cat([r[:, 0], u[:, 1], r[:, 2]], -1)))
    torch.testing.assert_close(beta[:, 1], g_v(torch.cat([alpha[:, 0], alpha[:, 1], alpha[:, 2]], -1)))


def test_gradients_and_bad_order():
    rec = TwoLevelReconstruction(3, hidden_size=4)
    u = torch.randn(2, 3, 2, 4, requires_grad=True)
    r = torch.randn(2, 3, 2, 4, requires_grad=True)
    alpha, beta = rec(u, r)
    (alpha.sum() + beta.sum()).backward()
    assert u.grad.abs().sum() > 0 and r.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="permutation"):
        TwoLevelReconstruction(3, 4, slot_order=[0, 0, 1])


def test_levels_can_run_separately():
    """first_level/second_level compose to forward; the second level accepts any [B, M, C, d] (ablations)."""
    torch.manual_seed(0)
    rec = TwoLevelReconstruction(3, hidden_size=4, slot_order=[2, 0, 1])
    u, r = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4)
    alpha, beta = rec(u, r)
    torch.testing.assert_close(rec.first_level(u, r), alpha)
    torch.testing.assert_close(rec.second_level(alpha), beta)
    o = torch.randn(2, 3, 2, 4)
    g_v = rec.networks[1]
    torch.testing.assert_close(rec.second_level(o)[:, 1], g_v(torch.cat([o[:, 2], o[:, 0], o[:, 1]], -1)))
