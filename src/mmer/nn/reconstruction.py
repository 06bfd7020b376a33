"""Latent autoencoders and the two-level reconstruction networks (CARAT Eq. 2, RAMer Eq. 6).

Shapes follow one convention: label-specific tensors are stacked over modalities as [B, M, C, ·] in the model's
modality order (t, v, a in the official codes).

Per modality m (carat ref §2.6, ramer ref §2.5):
    encoder  eps_m: Linear(d -> d/2) -> ReLU -> Linear(d/2 -> d_z)       z = eps_m(x)      [B, C, d_z]
    decoder  d_m  : Linear(d_z -> d/2) -> ReLU -> Linear(d/2 -> d)       x~ = d_m(z)      [B, C, d]
Xavier-uniform weights, PyTorch's default bias init, no dropout — as in the code.

Two-level reconstruction with one network g_m = Linear(M*d -> d) per target modality, *shared by both levels*
(the code's `va2t`, `ta2v`, `tv2a`; the papers say "multi-layer linear networks" and leave sharing open):
    level 1: alpha_m = g_m([slot_1; ...; slot_M]), slot of modality k = u_k (decoded intrinsic vector) if k == m
             else r_k (decoded autoencoder reconstruction d_k(eps_k(x_k)))
    level 2: beta_m  = g_m([alpha_1; ...; alpha_M])      (the same input for every m)
(CARAT names the outputs FRR/SRR = alpha/beta; RAMer names them X_beta/X_gamma.) Slots follow `slot_order`, the
identity by default = the official [t; v; a]; RAMer's Table 4 rows (9)-(10) change this fusion order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmer.errors import ConfigError


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (not after the last), Xavier-uniform weights."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        nn.init.xavier_uniform_(linear.weight)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LatentAutoencoders(nn.Module):
    """One encoder eps_m and one decoder d_m per modality, applied per label vector.

    encode: [B, M, C, d] -> [B, M, C, d_z];  decode: [B, M, C, d_z] -> [B, M, C, d].
    """

    def __init__(self, num_modalities: int, hidden_size: int, latent_size: int):
        super().__init__()
        mid = hidden_size // 2
        self.encoders = nn.ModuleList(_mlp([hidden_size, mid, latent_size]) for _ in range(num_modalities))
        self.decoders = nn.ModuleList(_mlp([latent_size, mid, hidden_size]) for _ in range(num_modalities))

    @staticmethod
    def _per_modality(nets: nn.ModuleList, x: Tensor) -> Tensor:
        if x.shape[1] != len(nets):
            raise ValueError(f"expected {len(nets)} modalities on dim 1, got shape {tuple(x.shape)}")
        return torch.stack([net(x[:, m]) for m, net in enumerate(nets)], dim=1)

    def encode(self, x: Tensor) -> Tensor:
        return self._per_modality(self.encoders, x)  # [B, M, C, d_z]

    def decode(self, z: Tensor) -> Tensor:
        return self._per_modality(self.decoders, z)  # [B, M, C, d]


class TwoLevelReconstruction(nn.Module):
    """forward(intrinsic u [B, M, C, d], reconstruction r [B, M, C, d]) -> (alpha, beta), each [B, M, C, d].

    `slot_order[s]` is the modality placed in concatenation slot s (default: modality order). The same order is
    used at both levels.
    """

    def __init__(self, num_modalities: int, hidden_size: int, slot_order: Sequence[int] | None = None):
        super().__init__()
        order = list(range(num_modalities)) if slot_order is None else [int(k) for k in slot_order]
        if sorted(order) != list(range(num_modalities)):
            raise ConfigError(
                f"reconstruction slot_order must be a permutation of 0..{num_modalities - 1}, got {list(order)}"
            )
        self.slot_order = order
        self.networks = nn.ModuleList(nn.Linear(num_modalities * hidden_size, hidden_size) for _ in order)
        for g in self.networks:
            nn.init.xavier_uniform_(g.weight)

    def _per_target(self, inputs: Tensor) -> Tensor:
        """inputs [B, M(target), C, M*d] -> [B, M, C, d] with g_m applied to target m's row."""
        return torch.stack([g(inputs[:, m]) for m, g in enumerate(self.networks)], dim=1)

    def forward(self, intrinsic: Tensor, reconstruction: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.first_level(intrinsic, reconstruction)
        return alpha, self.second_level(alpha)

    def first_level(self, intrinsic: Tensor, reconstruction: Tensor) -> Tensor:
        """alpha_m = g_m(slots with u_m in m's own slot and r_k elsewhere) -> [B, M, C, d]."""
        if intrinsic.shape != reconstruction.shape:
            raise ValueError(
                f"intrinsic {tuple(intrinsic.shape)} and reconstruction {tuple(reconstruction.shape)} differ in shape"
            )
        b, m_count, c, d = intrinsic.shape
        order = self.slot_order
        own = torch.eye(m_count, dtype=torch.bool, device=intrinsic.device)[:, order]  # [M(target), M(slot)]
        slots = torch.where(
            own[None, :, None, :, None],  # [1, M, 1, M, 1]
            intrinsic[:, order].transpose(1, 2).unsqueeze(1),  # [B, 1, C, M(slot), d]
            reconstruction[:, order].transpose(1, 2).unsqueeze(1),
        )  # [B, M(target), C, M(slot), d]
        return self._per_target(slots.reshape(b, m_count, c, m_count * d))  # [B, M, C, d]

    def second_level(self, features: Tensor) -> Tensor:
        """beta_m = g_m([x_1; ...; x_M]), the same input for every target m: [B, M, C, d] -> [B, M, C, d].

        `features` is alpha in the full model; an ablation without the first level passes the un-reconstructed
        label-specific features instead.
        """
        b, m_count, c, d = features.shape
        fused = features[:, self.slot_order].transpose(1, 2).reshape(b, 1, c, m_count * d)  # [B, 1, C, M*d]
        return self._per_target(fused.expand(b, m_count, c, m_count * d))  # [B, M, C, d]
