"""`carat`: CARAT (Peng et al., AAAI 2024) — contrastive feature reconstruction and aggregation.
Paper: papers/carat_aaai2024.txt (its equations were lost in extraction); official code and the equations
reconstructed from it: reference/carat_official_code.md (§2-3, "ref" below). Full write-up: docs/models/carat.md.

Pipeline (all label-specific tensors are [B, M, C, ·]: sample, modality, label, feature):
1. Extraction: per modality a TF-style input LayerNorm, (unaligned data: CTC pseudo-alignment, ref §2.2), a
   post-LN BERT encoder (`nn.encoders`), then label-wise attention (Eq. 1, `nn.label_attention`) -> o.
2. Latent space: encoder/decoder per modality (`nn.reconstruction.LatentAutoencoders`): z = En(o), r = De(z).
   Intrinsic latent c from momentum prototypes (Eq. 8-10, `nn.prototypes`): soft in training, hard at
   prediction; u = De(c).
3. Two-level reconstruction (Eq. 2, `nn.reconstruction.TwoLevelReconstruction`): alpha_m = R_m(u_m in m's slot,
   r elsewhere), beta_m = R_m([alpha_t; alpha_v; alpha_a]); L_rec (Eq. 3) = sum_m MSE(r, o) + MSE(alpha, o)
   (+ 0 * MSE(beta, o)).
4. Max-pooling-like network (Eq. 4-5): per-modality classifiers W_m (no bias, shared by the o/alpha/beta levels),
   max over modalities of the logits, BCE per level weighted gamma_o, gamma_alpha, gamma_beta.
5. SupCon (Eq. 6-7, `nn.contrastive`) over En(o), En(alpha), En(beta) of every (modality, label) plus an 8192-row
   queue; positives share (modality, label, polarity).
6. Shuffle-based aggregation (Eq. 11-14, `nn.shuffle`): A = MLP(C*d -> d -> C) on each (sample, modality) row of
   stack(beta) concatenated over labels; BCE(A(beta), y) + gamma_sf BCE(A(shuffled beta), shuffled y).
7. Total loss (Eq. 15): the weighted sum of the components above (`loss_weights`).
8. Prediction (Eq. 16): 1/2 (max_m sigmoid(W_m beta_m) + mean_m sigmoid(A(beta_m))) > threshold (0.25 official).

Paper (default) vs official code (option); bug fixes (reference §6):
- shuffle: `paper` — a sample-wise then a modality-wise shuffle, true random permutations drawn per label
  (Eq. 11-12) | `carat_code` — the code's fused index, which repeats and drops cells (§6.1 item 3).
- contrastive_anchors: `batch` — anchors are the batch embeddings (Eq. 7) | `pool` — the code also averages over the
  8192 queue rows (§6.1 item 2). queue_init: `empty` | `code` (randn normalised along the wrong axis).
  The queue is written detached (the code keeps the autograd history, §6.1 item 6).
- agg_gradient: `joint` — A is trained inside the one objective of Eq. 15 with gradient into beta, as the code
  does (the paper's "fine-tune a classifier" names no separate stage) | `classifier` — L_agg trains A only.
- prototype_eval: `hard` (Eq. 10, code) | `soft`. The prototype EMA is the exact vectorised closed form of the
  code's per-sample loop; it runs after the contrastive loss and uses the detached base latents, as the code; the
  prototypes are zero-initialised, not renormalised, and the soft pattern has no temperature (code).
- ctc (unaligned data): `text` in the mosei-unaligned preset (visual/audio aligned onto the text length, the code's
  --unaligned_mask_same_length) | `same` (the code's default: each modality keeps its own length) | `off`.
- Metrics and validation are the engine's: true precision/recall (the code swaps them), every validation sample
  once in order (the code shuffles and drops the last partial batch), selection ties keep the earlier epoch.
- The encoders respect padding masks (the code's loaders pass all-ones masks; use the readers' `masks: ones`
  option for that). No unused tanh pooler; position tables are sized from the data (the code's 500/100-row tables
  are mostly unused). A sample missing a modality gets o = 0 there (not NaN) and its rows of that modality stay out
  of the contrastive pool and the prototype update. The official 1e-12 epsilons are left out of the contrastive
  loss. Attention dropout (`nn.encoders.dropout_attention`) has PyTorch's distribution but another random stream.
- Data (docs/datasets.md): unaligned MOSEI reads MulT's pickle named by an option and joins labels by sample index
  (the code hard-codes a path); M3ED runs from the release pickle or the converted file (the code's pipeline does
  not run), with the modality names corrected (`modality_names: carat` for the code's swapped names).
Ambiguities and our choices: the weight of each MSE term and the autoencoder term in L_rec come from the code
(Eq. 3 was lost); R_m is one Linear shared by both levels (code). Table 3 ablations: `variant` (MRM / AGG /
MRM+AGG, Appendix C.1), `autoencoders=false` (Eq. 17 unknown: prototypes of o itself), `first_level`,
`second_level`, `shuffle_samples`, `shuffle_modalities`, and the loss weights (configs/ablations/carat_table3.yaml).
Multi-party batches: CARAT is not person-aware; the clip is read as one sequence per modality, a learned marker
(`nn.party.TargetMarker`) is added to the target token's embedding, and the target token always counts as a real
token (a placeholder when its own features are missing) so it can gather context; personality is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmer.config import ModelConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec
from mmer.errors import ConfigError
from mmer.models.base import MMERModel, ModelOutput
from mmer.nn.contrastive import QueueSupConLoss, modality_label_polarity_ids
from mmer.nn.encoders import LAYER_NORM_EPS, CTCAligner, TransformerConfig, TransformerEncoder
from mmer.nn.label_attention import LabelWiseAttention
from mmer.nn.party import TargetMarker
from mmer.nn.prototypes import LabelPrototypes
from mmer.nn.reconstruction import LatentAutoencoders, TwoLevelReconstruction
from mmer.nn.shuffle import label_shuffle
from mmer.registry import MODELS

VARIANTS = ("carat", "mrm", "agg", "mrm_agg")


@dataclass
class CARATConfig(ModelConfig):
    threshold: float = 0.25  # official scripts (argparse default 0.35)
    # extractors (official values, ref §2.3)
    hidden_size: int = 256  # d
    latent_size: int = 64  # d_z
    num_heads: int = 8
    intermediate_size: int = 256  # FFN size (= d in the code)
    dropout: float = 0.3
    attention_dropout: float = 0.3
    layers: dict[str, int] = field(default_factory=lambda: {"text": 6, "visual": 4, "audio": 4})  # paper l_t, l_v, l_a
    default_layers: int = 4  # modalities not named in `layers`
    max_positions: int = 0  # rows of each position table; 0 = the data's longest sequence (code: 60/500/500, M3ED 100)
    input_norm: bool = True  # the code's LayerNorm over the raw features
    ctc: Literal["off", "text", "same"] = "off"  # unaligned data: CTC onto the reference's length | each own length (code default)
    ctc_reference: str = "text"  # the modality that is not aligned (and whose length `ctc: text` targets)
    # architecture switches (the paper's Table 3 rows)
    variant: Literal["carat", "mrm", "agg", "mrm_agg"] = "carat"  # mrm/agg/mrm_agg: Table 3 rows (1)-(3)
    autoencoders: bool = True  # false: row (5) "w/o En/De"
    first_level: bool = True  # false: row (7)
    second_level: bool = True  # false: row (8)
    shuffle: Literal["paper", "carat_code"] = "paper"
    shuffle_samples: bool = True  # false: row (10)
    shuffle_modalities: bool = True  # false: row (11)
    agg_gradient: Literal["joint", "classifier"] = "joint"
    # contrastive learning and prototypes
    queue_size: int = 8192
    temperature: float = 0.07
    contrastive_anchors: Literal["batch", "pool"] = "batch"  # pool = code
    queue_init: Literal["empty", "code"] = "empty"
    contrastive_chunk: int = 256  # anchors per block of the memory-efficient SupCon
    prototype_momentum: float = 0.99  # gamma of Eq. 8
    prototype_eval: Literal["hard", "soft"] = "hard"
    # trade-off weights (Eq. 5, 3, 7, 14, 15; official values)
    weight_clf_o: float = 0.01  # gamma_o
    weight_clf_alpha: float = 0.1  # gamma_alpha
    weight_clf_beta: float = 1.0  # gamma_beta (the prediction level)
    weight_contrastive: float = 1.0  # gamma_s
    weight_rec: float = 1.0  # gamma_r, multiplies the three terms below
    weight_rec_autoencoder: float = 1.0  # MSE(De(En(o)), o)
    weight_rec_first: float = 1.0  # MSE(alpha, o)
    weight_rec_second: float = 0.0  # MSE(beta, o): "L_r only in the first level" (Appendix A, code)
    weight_agg: float = 1.0  # BCE(A(beta), y)
    weight_shuffle: float = 0.1  # gamma_sf


@dataclass
class Levels:
    """Label-specific features at every stage of one forward pass, each [B, M, C, d] (latents [B, M, C, d_z])."""

    o: Tensor  # label-wise attention output
    alpha: Tensor | None  # first-level reconstruction (FRR); None without the first level
    beta: Tensor | None  # second-level reconstruction (SRR); None without the second level
    latent: Tensor | None  # En(o); None without autoencoders
    decoded: Tensor | None  # De(En(o)); None without autoencoders

    @property
    def final(self) -> Tensor:
        """The features the prediction uses: beta, or the last level that exists."""
        for x in (self.beta, self.alpha, self.o):
            if x is not None:
                return x
        raise AssertionError("unreachable")

    def named(self) -> list[tuple[str, Tensor]]:
        """(level name, features) for o, alpha, beta that exist, in order."""
        return [(n, x) for n, x in (("o", self.o), ("alpha", self.alpha), ("beta", self.beta)) if x is not None]


def _xavier_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear/ReLU/Linear with Xavier-uniform weights and PyTorch's default biases (the code's MLLinear)."""
    first, second = nn.Linear(sizes[0], sizes[1]), nn.Linear(sizes[1], sizes[2])
    nn.init.xavier_uniform_(first.weight)
    nn.init.xavier_uniform_(second.weight)
    return nn.Sequential(first, nn.ReLU(), second)


def _bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


def _mse_per_modality(x: Tensor, target: Tensor) -> Tensor:
    """sum_m mean over (B, C, d) of (x - target)^2, as the code's per-modality MSELoss terms."""
    return (x - target).pow(2).mean(dim=(0, 2, 3)).sum()


@MODELS.register("carat", options=CARATConfig, summary="CARAT (AAAI 2024): contrastive feature reconstruction and shuffle-based aggregation")
class CARAT(MMERModel):
    def __init__(self, cfg: CARATConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self._validate(cfg, spec)
        d, c = cfg.hidden_size, spec.num_labels
        self.modalities = spec.modality_names
        n_mod = len(self.modalities)
        self.input_norms = nn.ModuleDict(
            {m.name: nn.LayerNorm(m.dim, eps=LAYER_NORM_EPS) for m in spec.modalities if cfg.input_norm}
        )
        self.aligners = nn.ModuleDict({m: CTCAligner(spec.modality(m).dim, length) for m, length in self._ctc_lengths().items()})
        self.encoders = nn.ModuleDict({m.name: TransformerEncoder(self._encoder_config(m.name)) for m in spec.modalities})
        self.target_marker = TargetMarker(d) if spec.multi_party else None
        self.label_attention = nn.ModuleDict({m: LabelWiseAttention(d, c) for m in self.modalities})
        # W_m, no bias, kaiming_uniform(a=sqrt 5) of a [C, d] matrix = U(-1/sqrt d, 1/sqrt d) (ref §2.5)
        self.classifier = nn.Parameter(torch.empty(n_mod, c, d).uniform_(-1.0 / math.sqrt(d), 1.0 / math.sqrt(d)))
        if cfg.variant == "carat":
            self.autoencoders = LatentAutoencoders(n_mod, d, cfg.latent_size) if cfg.autoencoders else None
            proto_dim = cfg.latent_size if cfg.autoencoders else d
            self.prototypes = LabelPrototypes(n_mod, c, proto_dim, cfg.prototype_momentum, cfg.prototype_eval)
            self.reconstruction = TwoLevelReconstruction(n_mod, d) if cfg.first_level or cfg.second_level else None
            self.aggregator = _xavier_mlp([c * d, d, c])  # A (Eq. 14)
            self.contrastive = (
                QueueSupConLoss(cfg.latent_size, cfg.queue_size, cfg.temperature, cfg.contrastive_anchors, cfg.queue_init, cfg.contrastive_chunk)
                if cfg.autoencoders and cfg.weight_contrastive > 0
                else None
            )
        else:  # Table 3 rows (1)-(3): no latent space, reconstruction, contrastive learning or aggregation MLP
            self.autoencoders = self.prototypes = self.reconstruction = self.aggregator = self.contrastive = None
        if cfg.variant in ("agg", "mrm_agg"):
            # AGG (Appendix C.1): per label, a linear score of the modalities' concatenated features
            self.concat_weight = nn.Parameter(torch.empty(c, n_mod * d).uniform_(-1.0 / math.sqrt(n_mod * d), 1.0 / math.sqrt(n_mod * d)))
            self.concat_bias = nn.Parameter(torch.zeros(c))

    # ------------------------------------------------------------------------------------------ construction

    @staticmethod
    def _validate(cfg: CARATConfig, spec: DataSpec) -> None:
        if cfg.variant not in VARIANTS:
            raise ConfigError(f"model.variant must be one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
        if cfg.hidden_size % cfg.num_heads or cfg.hidden_size % 2:
            raise ConfigError(f"model.hidden_size={cfg.hidden_size} must be even and divisible by model.num_heads={cfg.num_heads}")
        for key, least in (("latent_size", 1), ("intermediate_size", 1), ("default_layers", 0)):
            if getattr(cfg, key) < least:
                raise ConfigError(f"model.{key} must be >= {least}, got {getattr(cfg, key)}")
        if any(n < 0 for n in cfg.layers.values()):
            raise ConfigError(f"model.layers must hold non-negative layer counts, got {cfg.layers}")
        if not cfg.autoencoders and cfg.weight_contrastive > 0:
            raise ConfigError(
                "model.autoencoders=false removes the latent space the contrastive loss lives in (paper Appendix C.2); "
                "also set model.weight_contrastive=0"
            )
        if cfg.ctc != "off":
            if spec.multi_party:
                raise ConfigError(f"model.ctc={cfg.ctc} re-times sequences, which breaks the token grid of multi-party dataset '{spec.name}'; use model.ctc=off")
            if cfg.ctc_reference not in spec.modality_names:
                raise ConfigError(f"model.ctc_reference '{cfg.ctc_reference}' is not a modality of '{spec.name}' ({', '.join(spec.modality_names)})")
        for key in ("weight_clf_o", "weight_clf_alpha", "weight_clf_beta", "weight_contrastive", "weight_rec", "weight_rec_autoencoder", "weight_rec_first", "weight_rec_second", "weight_agg", "weight_shuffle"):
            if getattr(cfg, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(cfg, key)}")

    def _ctc_lengths(self) -> dict[str, int]:
        """Output length of the CTC aligner of every re-timed modality."""
        cfg, spec = self.cfg, self.spec
        if cfg.ctc == "off":
            return {}
        target = spec.modality(cfg.ctc_reference).max_len
        return {m.name: target if cfg.ctc == "text" else m.max_len for m in spec.modalities if m.name != cfg.ctc_reference}

    def _encoder_config(self, modality: str) -> TransformerConfig:
        cfg = self.cfg
        length = self._ctc_lengths().get(modality, self.spec.modality(modality).max_len)
        return TransformerConfig(
            hidden_size=cfg.hidden_size,
            num_layers=cfg.layers.get(modality, cfg.default_layers),
            num_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            max_positions=max(cfg.max_positions, length),
            input_dim=self.spec.modality(modality).dim,
        )

    # ------------------------------------------------------------------------------------------ extraction

    def label_features(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Label-wise attention outputs o [B, M, C, d] and presence [B, M] (the modality has a real token)."""
        outputs, present = [], []
        for m in self.modalities:
            x, mask = batch.features[m].float(), batch.masks[m]  # [B, L, F], [B, L]
            if batch.party is not None:
                mask = mask | batch.party.target  # the target token always takes part (placeholder if missing)
            if m in self.input_norms:
                x = self.input_norms[m](x)
            if m in self.aligners:
                aligned = self.aligners[m](x, mask)
                x, mask = aligned.aligned, aligned.mask  # [B, S, F], [B, S]
            encoder = self.encoders[m]
            h = encoder.embedding(x)  # [B, L, d]
            if self.target_marker is not None:
                h = self.target_marker(h, batch.party)
            for layer in encoder.layers:
                h = layer(h, mask)
            outputs.append(self.label_attention[m](h, mask))  # [B, C, d]
            present.append(mask.any(dim=1))
        return torch.stack(outputs, dim=1), torch.stack(present, dim=1)

    def modality_logits(self, x: Tensor) -> Tensor:
        """Per-modality label logits <W_m,j, x_m,j>: [B, M, C, d] -> [B, M, C]."""
        return torch.einsum("bmcd,mcd->bmc", x, self.classifier)

    def aggregate(self, x: Tensor) -> Tensor:
        """A applied to each (sample, modality) row concatenated over labels: [B, M, C, d] -> logits [B, M, C]."""
        b, m, c, d = x.shape
        return self.aggregator(x.reshape(b, m, c * d))

    # ------------------------------------------------------------------------------------------ CARAT

    def levels(self, o: Tensor) -> Levels:
        """Latent space, intrinsic vectors and the two reconstruction levels from o [B, M, C, d]."""
        cfg = self.cfg
        if self.autoencoders is not None:
            latent = self.autoencoders.encode(o)  # z [B, M, C, d_z]
            decoded = self.autoencoders.decode(latent)  # r [B, M, C, d]
            intrinsic = self.autoencoders.decode(self.prototypes.intrinsic(latent))  # u = De(c)
            others = decoded
        else:  # "w/o En/De": prototypes of o itself, the other slots hold o (our design of the unknown Eq. 17)
            latent = decoded = None
            intrinsic = self.prototypes.intrinsic(o)  # [B, M, C, d]
            others = o
        alpha = self.reconstruction.first_level(intrinsic, others) if cfg.first_level else None
        beta = self.reconstruction.second_level(alpha if alpha is not None else o) if cfg.second_level else None
        return Levels(o, alpha, beta, latent, decoded)

    def forward(self, batch: Batch) -> ModelOutput:
        o, present = self.label_features(batch)
        if self.cfg.variant != "carat":
            return self._basic_forward(o, batch.labels)
        lv = self.levels(o)
        final = lv.final  # [B, M, C, d]
        final_logits = self.modality_logits(final)  # [B, M, C]
        agg_logits = self.aggregate(final.detach() if self.cfg.agg_gradient == "classifier" and self.training else final)  # [B, M, C]
        probs = 0.5 * (torch.sigmoid(final_logits.amax(dim=1)) + torch.sigmoid(agg_logits).mean(dim=1))  # [B, C], Eq. 16
        if not self.training:
            return ModelOutput(probs)
        return ModelOutput(probs, self._losses(lv, final_logits, agg_logits, present, batch.labels))

    def _losses(self, lv: Levels, final_logits: Tensor, agg_logits: Tensor, present: Tensor, y: Tensor) -> dict[str, Tensor]:
        cfg = self.cfg
        losses: dict[str, Tensor] = {}
        # Eq. 4-5: max over modalities, BCE per level; the prediction level carries gamma_beta
        named = lv.named()
        for name, x in named[:-1]:
            losses[f"clf_{name}"] = _bce(self.modality_logits(x).amax(dim=1), y)
        losses["clf_beta"] = _bce(final_logits.amax(dim=1), y)
        # Eq. 3
        if lv.decoded is not None:
            losses["rec_autoencoder"] = _mse_per_modality(lv.decoded, lv.o)
        if lv.alpha is not None:
            losses["rec_first"] = _mse_per_modality(lv.alpha, lv.o)
        if lv.beta is not None:
            losses["rec_second"] = _mse_per_modality(lv.beta, lv.o)
        # Eq. 11-14
        targets = y.unsqueeze(1).expand_as(agg_logits)  # [B, M, C]
        losses["agg"] = _bce(agg_logits, targets)
        if cfg.shuffle_samples or cfg.shuffle_modalities:
            source = lv.final.detach() if cfg.agg_gradient == "classifier" else lv.final
            shuffled, shuffled_y = label_shuffle(
                source, y, cfg.shuffle, sample_wise=cfg.shuffle_samples, modality_wise=cfg.shuffle_modalities
            )
            losses["shuffle"] = _bce(self.aggregate(shuffled), shuffled_y)
        # Eq. 6-7, then the momentum prototypes (Eq. 8) from the detached base latents, after the queue update
        if self.contrastive is not None:
            losses["contrastive"] = self._contrastive(lv, present, y)
        self.prototypes.update(lv.latent if lv.latent is not None else lv.o, y, present)  # o = 0 of a missing modality
        return losses

    def _contrastive(self, lv: Levels, present: Tensor, y: Tensor) -> Tensor:
        """SupCon over En(level) of every level, modality and label; (modality, label, polarity) classes."""
        assert self.autoencoders is not None and self.contrastive is not None
        views = [lv.latent] + [self.autoencoders.encode(x) for name, x in lv.named()[1:]]  # each [B, M, C, d_z]
        n_mod = len(self.modalities)
        emb = torch.cat(views, dim=1)  # [B, V, C, d_z], V = levels x M, view v has modality v mod M
        view_modality = [v % n_mod for v in range(emb.shape[1])]
        ids = modality_label_polarity_ids(y, view_modality)  # [B, V, C]
        keep = present[:, view_modality]  # [B, V]: a missing modality has no embedding to contrast
        if not bool(keep.all()):
            emb, ids = emb[keep], ids[keep]  # [n, C, d_z], [n, C]
        return self.contrastive(emb.reshape(-1, emb.shape[-1]), ids.reshape(-1))

    # ------------------------------------------------------------------------------------------ Table 3 (1)-(3)

    def _basic_forward(self, o: Tensor, y: Tensor) -> ModelOutput:
        """MRM, AGG or MRM+AGG on o, without reconstruction, contrastive learning or shuffle aggregation."""
        scores, losses = [], {}
        if self.cfg.variant in ("mrm", "mrm_agg"):
            mrm = self.modality_logits(o).amax(dim=1)  # [B, C]
            scores.append(torch.sigmoid(mrm))
            losses["clf_beta"] = _bce(mrm, y)
        if self.cfg.variant in ("agg", "mrm_agg"):
            b, m, c, d = o.shape
            concat = o.transpose(1, 2).reshape(b, c, m * d)  # [B, C, M*d]: each label's modalities side by side
            agg = torch.einsum("bcx,cx->bc", concat, self.concat_weight) + self.concat_bias  # [B, C]
            scores.append(torch.sigmoid(agg))
            losses["agg"] = _bce(agg, y)
        probs = torch.stack(scores).mean(dim=0)  # MRM+AGG: the average, as Eq. 16 averages its two scores
        return ModelOutput(probs, losses if self.training else {})

    # ------------------------------------------------------------------------------------------ interface

    def loss_weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {
            "clf_o": cfg.weight_clf_o,
            "clf_alpha": cfg.weight_clf_alpha,
            "clf_beta": cfg.weight_clf_beta,
            "contrastive": cfg.weight_contrastive,
            "rec_autoencoder": cfg.weight_rec * cfg.weight_rec_autoencoder,
            "rec_first": cfg.weight_rec * cfg.weight_rec_first,
            "rec_second": cfg.weight_rec * cfg.weight_rec_second,
            "agg": cfg.weight_agg,
            "shuffle": cfg.weight_shuffle,
        }

    @torch.no_grad()
    def analysis(self, batch: Batch) -> dict[str, Tensor]:
        """"modality_label": per-modality logits of the prediction level [B, M, C] (before the max);
        "reconstructed": the normalised latent of that level averaged over labels [B, M, d_z] (without
        autoencoders: the features themselves, [B, M, d])."""
        o, _ = self.label_features(batch)
        if self.cfg.variant != "carat":
            return {"modality_label": self.modality_logits(o)}
        final = self.levels(o).final
        if self.autoencoders is not None:
            embedding = F.normalize(self.autoencoders.encode(final), dim=-1).mean(dim=2)
        else:
            embedding = final.mean(dim=2)
        return {"modality_label": self.modality_logits(final), "reconstructed": embedding}
