"""`tailor`: TAILOR (Zhang et al., AAAI 2022) — versatile multi-modal learning for multi-label emotion recognition.
Paper: papers/tailor_aaai2022.txt; official code: reference/tailor_official_code.md ("ref"). Every option, preset
and ablation row: docs/models/tailor.md.

Pipeline (modalities m in the data's order; M modalities; sequences padded to one length L):
1. Uni-modal extractors (paper §"Uni-modal Extractor", ref §2.1-2.2): input LayerNorm (code), post-LN BERT encoder
   per modality (`nn.encoders`) -> H^m [B, L, d]. Unaligned data: CTC pseudo-alignment of every modality but
   `ctc_reference` onto that modality's length (ref §2.9), with the CTC loss.
2. Adversarial multi-modal refinement (Eq. 1-7, `nn.adversarial`): P^m = f_m(H^m), C^m = G(H^m); the modality
   discriminator D sees P^m directly (L_P, Eq. 5) and C^m through gradient reversal (L_C, Eq. 4); L_diff (Eq. 6)
   and L_cml (Eq. 7).
3. Hierarchical cross-modal encoder (Eq. 8): CME(A, B) = BERT encoder over [A; B] with position embeddings and
   modality token (type) embeddings 0/1 (`nn.encoders` CME variant + `concat_segments`). The parts are fused
   left to right in `fusion_order` (paper: v, a, t, c with C = sum_m C^m): Z = CME(CME(CME(P^v, P^a), P^t), C).
4. Label-guided decoder (Eq. 9-14): label embeddings -> label self-attention (label correlations, Eq. 9-12) ->
   label-to-modality attention over M (Eq. 13) -> FFN (Eq. 14), all post-LN sub-layers; then a classifier per
   label (Eq. 15).
Loss (Eq. 17): L_ml + alpha (L_C + L_P) + beta L_diff + gamma L_cml (+ w_ctc L_ctc on unaligned data).

Paper (default) vs official code (option), and our choices where the paper is silent:
- discriminator: linear (Eq. 2: softmax(I^T W + b), position-wise bias b in R^{tau x M}) | mlp (code).
- orth_pairs: paper (C^m-P^m, positive sign: Eq. 6's minus is a typo) | code (+ P^m-P^n pairs).
- common_semantic: paper (one prediction per C^m, masked mean over time, Eq. 7) | code (token 0 of sum_m C^m).
- classifier: per_label (Eq. 15: W_k, b_k) | shared (code: one Linear(d, 1), dropout 0.1 on the logit).
- concat_order: paper ([accumulated; new] in every CME, Eq. 8) | code ([new; accumulated] when a modality joins,
  so CME_1 = [P^a; P^v], CME_2 = [P^t; Z^va]; [Z^vat; C] for the common step). fusion_order keeps v, a, t, c.
- Learning rate 1e-5 aligned / 1e-4 unaligned (paper) vs 5e-5 (code's train.sh): presets. Threshold: the paper
  states none; 0.5 by default (the project's rule and AMP's re-run of TAILOR), the code's 0.35 via
  `model.threshold=0.35`.
- From the code where the paper is silent: input LayerNorm, learned positions, d 256, FFN 256, dropout 0.3,
  f_m/G = Linear -> Dropout (0.1/0.3) -> tanh, label-embedding LayerNorm + dropout, GRL lambda 1, BERT init, CTC
  loss summed over the batch with weight 0.5, BertAdam.
  `initializer_range` (code 0.02) is a config key: the synthetic presets use 0.07, because at 0.02 the 64-d
  network never leaves the label prior in 10 epochs (docs/models/tailor.md, "Synthetic presets").
Bug fixes: the best checkpoint is evaluated (code: the last epoch), evaluation sees every sample once in order
(code: shuffled, drop_last), precision and recall are not swapped (engine); unaligned training runs (the code's
CTCLoss import is commented out and its pickle path hard-coded) with F.ctc_loss on the model's device; inference
runs (the code's inference.py imports missing classes); COVAREP's -inf is set to 0 once by the reader.
Deviations: padding masks are respected (the code attends to zero padding; the readers' `masks: ones` option
restores that); C = sum of the C^m at the time steps where each modality is real; a sample missing a modality
contributes no discriminator, orthogonality or L_cml term for it and never produces NaN. The CTC aligner gives
padded frames zero weight and leaves out samples with fewer real frames than slots; position tables are sized from
the data; selection ties keep the earlier epoch (the code's <= keeps the later); weight decay follows the code's
rule (no bias, no encoder LayerNorm); dropout p is rounded to a multiple of 2^-16 and attention dropout has
another random stream; the code's GAP metric is not computed. Full list: docs/models/tailor.md.
Multi-party batches: TAILOR is not person-aware; the clip is read as a sequence per modality, a learned target
marker (`nn.party.TargetMarker`) is added to every modality's token embeddings, and the target token always
counts as a real token. `personality: true` adds the personality traits as a fourth modality (RAMer's Table 1
runs TAILOR with v, a, t, p).
Ablations (paper Table 3): amr, representations, weight_*, fusion_order, modality_token_embeddings, decoder,
label_correlation, label_modal_attention (configs/ablations/tailor_table3.yaml). Modalities `fusion_order` does
not name go just before C; C, if not named, goes last.
Report (`analysis`): C^m and P^m pooled (t-SNE, Fig. 6), D's probabilities on C^m and P^m (Fig. 5) and the first
decoder layer's label self-attention, row label -> column label (Fig. 7).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import CheckpointPolicy, SelectiveCheckpointContext, checkpoint, create_selective_checkpoint_contexts

from mmer.config import RESOURCE_ONLY, ModelConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec
from mmer.errors import ConfigError, unknown_name
from mmer.models.base import MMERModel, ModelOutput
from mmer.nn.adversarial import CommonGenerator, CommonSemanticHead, ModalityDiscriminator, SpecificityNets, orthogonality_loss
from mmer.nn.encoders import (
    LAYER_NORM_EPS,
    AttentionBlock,
    CTCAligner,
    FeedForward,
    TransformerConfig,
    TransformerEncoder,
    concat_segments,
    init_bert_weights,
)
from mmer.nn.masking import masked_mean
from mmer.nn.party import TargetMarker
from mmer.registry import MODELS

COMMON = "common"  # the name of the summed common representation C in `fusion_order`
PERSONALITY = "personality"  # the extra modality added by `personality: true`
PAPER_ORDER = ("visual", "audio", "text")  # Eq. 8: psi = [v, a, t, c]
REPRESENTATIONS = ("common", "private")


@dataclass
class TAILORConfig(ModelConfig):
    threshold: float = 0.5  # paper: none stated; code 0.35 (see the module docstring)
    # extractors (ref §2.2; official MOSEI values)
    hidden_size: int = 256  # d
    num_heads: int = 8  # h_l = h_m = 8 and every encoder's heads
    intermediate_size: int = 256  # FFN size (code: = d)
    dropout: float = 0.3
    attention_dropout: float = 0.3
    initializer_range: float = 0.02  # std of every Linear/Embedding weight (code: BERT's 0.02; see docs, "Synthetic presets")
    layers: dict[str, int] = field(default_factory=lambda: {"text": 6, "visual": 4, "audio": 4})  # n_t, n_v, n_a
    default_layers: int = 4  # modalities not named in `layers` (e.g. personality)
    cross_layers: int = 3  # n_c, every CME
    decoder_layers: int = 1  # label-guided decoder layers (code 1)
    max_positions: int = 0  # rows of the uni-modal position tables; 0 = the data's longest sequence
    input_norm: bool = True  # code: LayerNorm over the raw features
    personality: bool = False  # personality traits as an extra modality (multi-party data with personality)
    ctc: bool = False  # unaligned data: CTC pseudo-alignment onto `ctc_reference`'s length, plus the CTC loss
    ctc_reference: str = "text"
    ctc_reduction: Literal["sum", "mean"] = "sum"  # sum over the batch (code, warp-ctc) | mean over samples
    # adversarial multi-modal refinement (Eq. 1-7)
    amr: bool = True  # false: Table 3 (1) "w/o AMR" (the uni-modal outputs go straight into the HCME)
    representations: list[str] = field(default_factory=lambda: ["common", "private"])  # Table 3 (4) [common], (5) [private]
    private_dropout: float = 0.1  # f_m (code)
    common_dropout: float = 0.3  # G (code)
    discriminator: Literal["linear", "mlp"] = "linear"  # linear = Eq. 2; mlp = code
    discriminator_dropout: float = 0.1  # mlp only (code)
    grl_lambda: float = 1.0
    orth_pairs: Literal["paper", "code"] = "paper"
    common_semantic: Literal["paper", "code"] = "paper"
    # hierarchical cross-modal encoder (Eq. 8)
    fusion_order: list[str] = field(default_factory=list)  # [] = paper: visual, audio, text (then others), common
    concat_order: Literal["paper", "code"] = "paper"
    modality_token_embeddings: bool = True  # false: Table 3 (8) "w/o MTE"
    # memory only (same gradients), each at a cost in speed: recompute each CME layer / each uni-modal extractor
    # layer in the backward pass. Both on with train.release_memory is the low-memory mode (docs/models/tailor.md)
    recompute_cross: bool = field(default=False, metadata=RESOURCE_ONLY)
    recompute_unimodal: bool = field(default=False, metadata=RESOURCE_ONLY)
    # label-guided decoder (Eq. 9-15)
    decoder: Literal["label_guided", "identical"] = "label_guided"  # identical: Table 3 (9)
    label_correlation: bool = True  # label self-attention (Eq. 9-12); false with the next: Table 3 (10) "w/ LE"
    label_modal_attention: bool = True  # Eq. 13; false: every label reads the same mean of M, (10)-(11)
    classifier: Literal["per_label", "shared"] = "per_label"  # shared = code
    # trade-off weights (Eq. 17; paper = code)
    weight_adv: float = 0.01  # alpha, on L_C + L_P
    weight_orth: float = 5e-6  # beta
    weight_cml: float = 0.5  # gamma
    weight_ctc: float = 0.5  # code (the paper names no weight)


@dataclass
class Refinement:
    """Per-modality representations of one forward pass (lists in `TAILOR.modalities` order, each [B, L, d])."""

    hidden: list[Tensor]  # H^m, uni-modal extractor outputs
    masks: list[Tensor]  # bool [B, L]
    private: list[Tensor] | None  # P^m
    common: list[Tensor] | None  # C^m


class LabelEmbedding(nn.Module):
    """Label indices -> Dropout(LN(Embedding)) [C, d] (code: no position embedding)."""

    def __init__(self, num_labels: int, cfg: TransformerConfig):
        super().__init__()
        self.embedding = nn.Embedding(num_labels, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self) -> Tensor:
        return self.dropout(self.norm(self.embedding.weight))  # [C, d]


class UniformContext(nn.Module):
    """The label-to-modality sub-layer with its attention replaced by a uniform average over M's real tokens:
    LN(x + Dropout(Dense(Value(mean M)))) — every label receives the same modality vector (Table 3 (10)-(11))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        pooled = self.dense(self.value(masked_mean(memory, memory_mask)))  # [B, d]
        return self.norm(x + self.dropout(pooled).unsqueeze(1))  # [B, C, d]


class LabelGuidedDecoderLayer(nn.Module):
    """Label self-attention (Eq. 9-12) -> label-to-modality attention (Eq. 13) -> FFN (Eq. 14), post-LN."""

    def __init__(self, cfg: TransformerConfig, correlation: bool, modal_attention: bool):
        super().__init__()
        self.self_attention = AttentionBlock(cfg) if correlation else None
        self.cross_attention: nn.Module = AttentionBlock(cfg) if modal_attention else UniformContext(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, labels: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        if self.self_attention is not None:
            every_label = torch.ones(labels.shape[:2], dtype=torch.bool, device=labels.device)
            labels = self.self_attention(labels, every_label)  # [B, C, d]
        if isinstance(self.cross_attention, AttentionBlock):
            labels = self.cross_attention(labels, memory_mask, memory)
        else:
            labels = self.cross_attention(labels, memory, memory_mask)
        return self.ffn(labels)  # H [B, C, d]


def ctc_alignment_loss(logits: Tensor, mask: Tensor, reduction: str) -> Tensor:
    """CTC loss of an aligner's raw scores [B, T, S + 1] against targets 1..S (blank 0), as the code's warp-ctc.

    Real frames are moved to the front first (padding may sit anywhere); a sample with fewer real frames than S
    cannot be aligned and is left out. reduction "sum" sums over the batch (code), "mean" averages the samples.
    """
    b, _, channels = logits.shape
    s = channels - 1
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # [B, T], real frames first
    logits = logits.gather(1, order.unsqueeze(-1).expand_as(logits))
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [T, B, S + 1]
    targets = torch.arange(1, s + 1, device=logits.device).expand(b, s)
    lengths = mask.sum(dim=1)  # [B]
    usable = lengths >= s
    per_sample = F.ctc_loss(
        log_probs, targets, lengths.clamp(min=1), torch.full_like(lengths, s), blank=0, reduction="none", zero_infinity=True
    )  # [B]
    per_sample = per_sample * usable.to(per_sample.dtype)
    return per_sample.sum() if reduction == "sum" else per_sample.sum() / usable.sum().clamp(min=1)


_SAVED_OPS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)


def _policy(ctx: SelectiveCheckpointContext, op: object, *args: object, **kwargs: object) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _save_linear_outputs() -> tuple[object, object]:
    return create_selective_checkpoint_contexts(_policy)


def _pad_time(x: Tensor, length: int, value: float | bool = 0.0) -> Tensor:
    """Right-pad the time axis (dim 1) of [B, L, ...] to `length`."""
    extra = length - x.shape[1]
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 2) + [0, extra]
    return F.pad(x, pad, value=value)


@MODELS.register("tailor", options=TAILORConfig, summary="TAILOR (AAAI 2022): adversarial refinement, hierarchical cross-modal encoder, label-guided decoder")
class TAILOR(MMERModel):
    def __init__(self, cfg: TAILORConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self.use_personality = cfg.personality
        self.modalities: tuple[str, ...] = spec.modality_names + ((PERSONALITY,) if cfg.personality else ())
        self._validate(cfg, spec)
        d, c, n_mod = cfg.hidden_size, spec.num_labels, len(self.modalities)
        self.length = self._sequence_length()  # L: every modality's length after extraction (and padding)
        self.encoders = nn.ModuleDict({m: TransformerEncoder(self._encoder_config(m)) for m in self.modalities})
        self.aligners = nn.ModuleDict({m: CTCAligner(self._input_dim(m), self.length) for m in self._ctc_modalities()})
        self.target_marker = TargetMarker(d) if spec.multi_party else None
        reps = set(cfg.representations) if cfg.amr else set()
        self.private = SpecificityNets(n_mod, d, cfg.private_dropout) if "private" in reps else None
        self.generator = CommonGenerator(d, cfg.common_dropout) if "common" in reps else None
        self.discriminator = (
            ModalityDiscriminator(d, n_mod, cfg.discriminator, cfg.discriminator_dropout, self.length if cfg.discriminator == "linear" else None)
            if cfg.amr
            else None
        )
        self.common_head = CommonSemanticHead(d, c, cfg.common_semantic) if "common" in reps else None
        self.fusion_order = self._fusion_order()
        self.cross = nn.ModuleList(TransformerEncoder(self._cross_config(i + 2)) for i in range(len(self.fusion_order) - 1))
        if cfg.decoder == "label_guided":
            block = self._block_config()
            self.label_embedding: LabelEmbedding | None = LabelEmbedding(c, block)
            self.decoder_layers = nn.ModuleList(
                LabelGuidedDecoderLayer(block, cfg.label_correlation, cfg.label_modal_attention) for _ in range(cfg.decoder_layers)
            )
            rows = 1 if cfg.classifier == "shared" else c
            self.classifier_weight = nn.Parameter(torch.empty(rows, d))  # row k = W_k of Eq. 15
            self.classifier_bias = nn.Parameter(torch.zeros(rows))
            self.logit_dropout = nn.Dropout(0.1 if cfg.classifier == "shared" else 0.0)
        else:  # Table 3 (9) "w/ identical": one dense layer on the fused representation
            self.label_embedding = None
            self.identical_head = nn.Linear(d, c)
        self.apply(lambda module: init_bert_weights(module, cfg.initializer_range))  # code: BERT init everywhere (LSTMs excepted)
        if cfg.decoder == "label_guided":
            nn.init.normal_(self.classifier_weight, std=cfg.initializer_range)

    # ------------------------------------------------------------------------------------------ construction

    def _validate(self, cfg: TAILORConfig, spec: DataSpec) -> None:
        for name, tp in typing.get_type_hints(TAILORConfig).items():  # a config built in code skips the YAML checks
            if typing.get_origin(tp) is Literal and getattr(cfg, name) not in typing.get_args(tp):
                raise ConfigError(unknown_name(f"model.{name}", str(getattr(cfg, name)), typing.get_args(tp)))
        if cfg.hidden_size % cfg.num_heads:
            raise ConfigError(f"model.hidden_size={cfg.hidden_size} must be divisible by model.num_heads={cfg.num_heads}")
        for key in ("cross_layers", "decoder_layers", "intermediate_size"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(cfg, key)}")
        if any(n < 0 for n in cfg.layers.values()) or cfg.default_layers < 0:
            raise ConfigError(f"model.layers and model.default_layers must be >= 0, got {cfg.layers} and {cfg.default_layers}")
        unknown = [m for m in cfg.layers if m not in self.modalities and m not in PAPER_ORDER]
        if unknown:
            raise ConfigError(f"model.layers names {unknown}, which dataset '{spec.name}' does not have ({', '.join(self.modalities)})")
        bad = [r for r in cfg.representations if r not in REPRESENTATIONS]
        if bad or not cfg.representations or len(set(cfg.representations)) != len(cfg.representations):
            raise ConfigError(f"model.representations must be a non-empty list of distinct {', '.join(REPRESENTATIONS)}, got {cfg.representations}")
        if cfg.personality:
            if PERSONALITY in spec.modality_names:
                raise ConfigError(f"model.personality=true adds a modality named '{PERSONALITY}', but dataset '{spec.name}' already has one")
            if not spec.personality_dim or not spec.multi_party:
                raise ConfigError(f"model.personality=true needs personality traits, which dataset '{spec.name}' does not have; set model.personality=false")
        if cfg.ctc:
            if spec.multi_party:
                raise ConfigError(f"model.ctc=true re-times sequences, which breaks the token grid of multi-party dataset '{spec.name}'; set model.ctc=false")
            if cfg.ctc_reference not in spec.modality_names:
                raise ConfigError(f"model.ctc_reference '{cfg.ctc_reference}' is not a modality of '{spec.name}' ({', '.join(spec.modality_names)})")
        else:
            lengths = {m.name: m.max_len for m in spec.modalities}
            if len(set(lengths.values())) > 1:
                shown = ", ".join(f"{m} {n}" for m, n in lengths.items())
                raise ConfigError(
                    f"dataset '{spec.name}' has sequences of different lengths ({shown}); TAILOR sums the common "
                    "features time step by time step, so unaligned data needs model.ctc=true"
                )

    def _input_dim(self, modality: str) -> int:
        return self.spec.personality_dim if modality == PERSONALITY else self.spec.modality(modality).dim

    def _raw_length(self, modality: str) -> int:
        if modality == PERSONALITY:
            return max(m.max_len for m in self.spec.modalities)
        return self.spec.modality(modality).max_len

    def _ctc_modalities(self) -> list[str]:
        return [m for m in self.spec.modality_names if m != self.cfg.ctc_reference] if self.cfg.ctc else []

    def _sequence_length(self) -> int:
        if self.cfg.ctc:
            return self.spec.modality(self.cfg.ctc_reference).max_len
        return max(self._raw_length(m) for m in self.modalities)

    def _block_config(self, **changes: object) -> TransformerConfig:
        cfg = self.cfg
        base = dict(
            hidden_size=cfg.hidden_size,
            num_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            initializer_range=cfg.initializer_range,
            num_layers=0,
        )
        return TransformerConfig(**{**base, **changes})  # type: ignore[arg-type]

    def _encoder_config(self, modality: str) -> TransformerConfig:
        cfg = self.cfg
        length = self.length if modality in self._ctc_modalities() else self._raw_length(modality)
        return self._block_config(
            num_layers=cfg.layers.get(modality, cfg.default_layers),
            max_positions=max(cfg.max_positions, length, 1),
            input_dim=self._input_dim(modality),
            input_norm=cfg.input_norm,
        )

    def _cross_config(self, parts: int) -> TransformerConfig:
        """CME over `parts` sequences of length L (positions restart at 0 in every CME, as in the code)."""
        return self._block_config(
            num_layers=self.cfg.cross_layers,
            max_positions=parts * self.length,
            type_vocab_size=2 if self.cfg.modality_token_embeddings else 0,
        )

    def _fusion_order(self) -> list[str]:
        """The HCME order psi without the entries this configuration has no representation for."""
        cfg = self.cfg
        if cfg.fusion_order:
            order = list(cfg.fusion_order)
            allowed = [*self.modalities, COMMON]
            unknown = [x for x in order if x not in allowed]
            if unknown or len(set(order)) != len(order):
                raise ConfigError(
                    f"model.fusion_order must name modalities of '{self.spec.name}' ({', '.join(self.modalities)}) and "
                    f"'{COMMON}' at most once each, got {order}{'; unknown: ' + ', '.join(unknown) if unknown else ''}"
                )
            # what the list does not name still takes part: modalities (e.g. personality) go just before C, and C,
            # if not named, last (so a row written for three modalities, or one that forgets C, fuses every part)
            rest = [m for m in self.modalities if m not in order]
            at = order.index(COMMON) if COMMON in order else len(order)
            order = order[:at] + rest + order[at:] + ([] if COMMON in order else [COMMON])
        else:
            paper = [m for m in PAPER_ORDER if m in self.modalities]
            order = paper + [m for m in self.modalities if m not in paper] + [COMMON]
        fuse_common = cfg.amr and set(REPRESENTATIONS) <= set(cfg.representations)
        return [x for x in order if x != COMMON or fuse_common]

    # ------------------------------------------------------------------------------------------ forward

    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        missing = [m for m in self.spec.modality_names if m not in batch.features]
        if missing:
            raise ValueError(f"batch lacks modalities {missing} that this TAILOR model was built for")
        x = {m: batch.features[m] for m in self.spec.modality_names}  # [B, L_m, F_m]
        masks = {m: batch.masks[m] for m in self.spec.modality_names}  # [B, L_m]
        if self.use_personality:
            if batch.personality is None or batch.party is None:
                raise ValueError("model.personality=true but the batch carries no personality traits")
            x[PERSONALITY] = batch.personality  # [B, T, P]
            masks[PERSONALITY] = batch.party.valid
        if batch.party is not None:  # the target token always takes part (a placeholder if its features are missing)
            masks = {m: mask | batch.party.target for m, mask in masks.items()}
        return x, masks

    def extract(self, batch: Batch) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        """Uni-modal extractors: H^m [B, L, d] and masks [B, L] (padded to one length), plus L_ctc if aligning."""
        x, masks = self._inputs(batch)
        hidden, out_masks, ctc = [], [], []
        for m in self.modalities:
            encoder = self.encoders[m]
            h, mask = x[m].float(), masks[m]
            if encoder.input_norm is not None:
                h = encoder.input_norm(h)
            if m in self.aligners:
                aligned = self.aligners[m](h, mask)
                if self.training:
                    ctc.append(ctc_alignment_loss(aligned.logits, mask, self.cfg.ctc_reduction))
                h, mask = aligned.aligned, aligned.mask  # [B, S, F], [B, S]
            h = encoder.embedding(h)  # [B, L_m, d]
            if self.target_marker is not None:
                h = self.target_marker(h, batch.party)
            for layer in encoder.layers:
                h = self._run_layer(layer, h, mask, self.cfg.recompute_unimodal)
            hidden.append(h)
            out_masks.append(mask)
        length = max(h.shape[1] for h in hidden)
        hidden = [_pad_time(h, length) for h in hidden]
        out_masks = [_pad_time(mask, length, False) for mask in out_masks]
        return hidden, out_masks, (torch.stack(ctc).sum() if ctc else None)

    def refine(self, hidden: list[Tensor], masks: list[Tensor]) -> Refinement:
        """Eq. 1: P^m = f_m(H^m), C^m = G(H^m) (whichever this configuration has)."""
        private = self.private(hidden) if self.private is not None else None
        common = self.generator(hidden) if self.generator is not None else None
        return Refinement(hidden, masks, private, common)

    def fuse(self, r: Refinement) -> tuple[Tensor, Tensor]:
        """HCME (Eq. 8): fold the parts left to right in `fusion_order`; returns M [B, N, d] and its mask [B, N]."""
        parts: dict[str, tuple[Tensor, Tensor]] = {}
        per_modality = r.private if r.private is not None else (r.common if r.common is not None else r.hidden)
        for i, m in enumerate(self.modalities):
            parts[m] = (per_modality[i], r.masks[i])
        if COMMON in self.fusion_order:
            assert r.common is not None
            stacked = torch.stack(r.masks, dim=0).unsqueeze(-1)  # [M, B, L, 1]
            summed = (torch.stack(r.common, dim=0) * stacked.to(r.common[0].dtype)).sum(dim=0)  # C [B, L, d]
            parts[COMMON] = (summed, stacked.squeeze(-1).any(dim=0))
        fused = parts[self.fusion_order[0]]
        for cme, name in zip(self.cross, self.fusion_order[1:]):
            new = parts[name]
            pair = [new, fused] if self.cfg.concat_order == "code" and name != COMMON else [fused, new]
            x, mask, type_ids = concat_segments(pair)
            fused = (self._cross_encode(cme, x, mask, type_ids if self.cfg.modality_token_embeddings else None), mask)
        return fused

    def _cross_encode(self, cme: TransformerEncoder, x: Tensor, mask: Tensor, type_ids: Tensor | None) -> Tensor:
        """One CME [B, N, d], its layers run by `_run_layer` under `recompute_cross`."""
        h = cme.embedding(x, type_ids)  # [B, N, d]
        for layer in cme.layers:
            h = self._run_layer(layer, h, mask, self.cfg.recompute_cross)
        return h

    def _run_layer(self, layer: nn.Module, h: Tensor, mask: Tensor, recompute: bool) -> Tensor:
        """layer(h, mask); with `recompute` in training, the layer keeps only the results of its matrix products
        and recomputes the rest in the backward pass (activation checkpointing: the RNG state is restored, so
        dropout masks and gradients are unchanged)."""
        if not (recompute and self.training and torch.is_grad_enabled()):
            return layer(h, mask)
        return checkpoint(layer, h, mask, use_reentrant=False, context_fn=_save_linear_outputs)

    def decode(self, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Label-guided decoder and per-label classifiers (Eq. 9-15), or the identical head: logits [B, C]."""
        if self.label_embedding is None:
            return self.identical_head(masked_mean(memory, memory_mask))
        labels = self.label_embedding().unsqueeze(0).expand(memory.shape[0], -1, -1)  # [B, C, d]
        for layer in self.decoder_layers:
            labels = layer(labels, memory, memory_mask)
        logits = (labels * self.classifier_weight).sum(dim=-1) + self.classifier_bias  # [B, C]
        return self.logit_dropout(logits)

    def forward(self, batch: Batch) -> ModelOutput:
        hidden, masks, ctc = self.extract(batch)
        r = self.refine(hidden, masks)
        memory, memory_mask = self.fuse(r)
        logits = self.decode(memory, memory_mask)
        probs = torch.sigmoid(logits)
        if not self.training:
            return ModelOutput(probs)
        losses = {"ml": F.binary_cross_entropy_with_logits(logits, batch.labels)}  # Eq. 16 (mean over B x C)
        losses.update(self._refinement_losses(r, batch.labels))
        if ctc is not None:
            losses["ctc"] = ctc
        return ModelOutput(probs, losses)

    def _refinement_losses(self, r: Refinement, labels: Tensor) -> dict[str, Tensor]:
        """Eq. 4-7 for the representations this configuration has."""
        cfg, out = self.cfg, {}
        if self.discriminator is None:
            return out
        if r.common is not None:
            out["adv_common"] = self.discriminator.modality_loss(r.common, r.masks, reverse=cfg.grl_lambda)
        if r.private is not None:
            out["adv_private"] = self.discriminator.modality_loss(r.private, r.masks)
        if r.common is not None and r.private is not None and cfg.weight_orth > 0:
            out["orth"] = orthogonality_loss(r.common, r.private, r.masks, cfg.orth_pairs)
        if self.common_head is not None and r.common is not None and cfg.weight_cml > 0:
            out["cml"] = self.common_head.loss(r.common, labels, r.masks)
        return out

    # ------------------------------------------------------------------------------------------ interface

    def loss_weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {
            "adv_common": cfg.weight_adv,
            "adv_private": cfg.weight_adv,
            "orth": cfg.weight_orth,
            "cml": cfg.weight_cml,
            "ctc": cfg.weight_ctc,
        }

    def summed_losses(self) -> frozenset[str]:
        return frozenset({"ctc"}) if self.cfg.ctc and self.cfg.ctc_reduction == "sum" else frozenset()

    def label_correlation(self) -> Tensor | None:
        """Label self-attention weights of the first decoder layer (Eq. 10-11, paper Fig. 7), mean over heads,
        oriented as the report draws it (row label -> column label): entry [j, k] = sigma(r)[k, j], the weight
        with which label k's semantic embedding S_k reads label j, so every *column* sums to 1. In the first
        layer they depend on the label embeddings only, not on the sample. None without label self-attention.
        Call it in eval mode (`analysis` does): in training mode the label embedding's dropout makes it random."""
        if self.label_embedding is None or self.decoder_layers[0].self_attention is None:
            return None
        attention = self.decoder_layers[0].self_attention.attention
        labels = self.label_embedding().unsqueeze(0)  # [1, C, d]
        q = attention._heads(attention.query(labels))  # [1, h, C, dh]
        k = attention._heads(attention.key(labels))
        weights = torch.softmax(q @ k.transpose(-1, -2) / attention.head_dim**0.5, dim=-1)  # [1, h, C query, C key]
        return weights.mean(dim=(0, 1)).T  # [C key (influencing), C query (influenced)]

    @torch.no_grad()
    def analysis(self, batch: Batch) -> dict[str, Tensor]:
        """"common"/"specific": C^m/P^m pooled over real time steps [B, M, d]; "discriminator_probs" /
        "discriminator_probs_specific": D's softmax on C^m/P^m averaged over real time steps [B, M, M];
        "label_correlation" [C, C] (see `label_correlation`). M = the data's modalities. With a personality
        modality, D has one more class: it is left out and each row renormalised over the data's modalities
        (P(m | source, m is a data modality)), so 1/M still means "cannot tell". Runs in eval mode."""
        was_training = self.training
        self.eval()
        try:
            hidden, masks, _ = self.extract(batch)
            r = self.refine(hidden, masks)
            n = len(self.spec.modality_names)
            out: dict[str, Tensor] = {}
            for key, reps in (("common", r.common), ("specific", r.private)):
                if reps is None:
                    continue
                out[key] = torch.stack([masked_mean(reps[i], masks[i]) for i in range(n)], dim=1)  # [B, M, d]
                if self.discriminator is not None:
                    probs = [torch.softmax(self.discriminator(reps[i])[..., :n], dim=-1) for i in range(n)]  # [B, L, M]
                    pooled = torch.stack([masked_mean(p, masks[i]) for i, p in enumerate(probs)], dim=1)
                    out["discriminator_probs" if key == "common" else "discriminator_probs_specific"] = pooled  # [B, M src, M pred]
            correlation = self.label_correlation()
            if correlation is not None:
                out["label_correlation"] = correlation
            return out
        finally:
            self.train(was_training)
