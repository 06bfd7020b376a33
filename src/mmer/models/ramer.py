"""`ramer`: RAMer (Yang et al., IJCAI 2025) — reconstruction-based adversarial multi-party multi-modal multi-label
emotion recognition. Paper: papers/ramer_ijcai2025.txt; official code: reference/ramer_official_code.md ("ref").
Every option, preset and ablation row: docs/models/ramer.md.

Pipeline (modalities m in the data's order; label-specific tensors [B, M, C, d]):
1. Auxiliary uni-modal embedding (§4.1, `ramer_parts`): one BERT-style encoder per modality (+ personality);
   on multi-party data personality is concatenated to every modality and inter-/intra-person attention runs on
   the (person, segment) grid; learned target roles; label-wise attention -> X_alpha. Single-speaker data:
   encoders + label-wise attention (ref §2.2-2.3).
2. Reconstruction (§4.2, Eq. 6, 9-10): latent autoencoders eps_m/d_m; X~ = d(eps(X_alpha)); prototypes mu+/- per
   (modality, label) give intrinsic latents (soft in training, hard at prediction), D~ = d(intrinsic); the
   two-level g gives X_beta = g(D~_m with X~ of the others) and X_gamma = g(X_beta of all).
3. Label-wise logits W_m (no bias, shared by the levels), max over modalities: S^alpha, S^beta, S^gamma (Eq. 8).
4. Adversarial (Eq. 1-5): S^m = f_m(X_alpha), C^m = G(X_gamma); discriminator D on both, gradient reversal on
   C; L_C, L_S, L_orth (C^m-S^m pairs, positive sign), L_cml (per C^m).
5. Supervised contrastive learning (Eq. 11) over eps of the alpha/beta/gamma views with a FIFO queue, classes =
   (modality, label, polarity); then the prototype EMA from the alpha latents.
6. Stack shuffle (§4.3, Eq. 12): per label, the [C^m; S^m] label vectors are recombined across samples, then
   across modalities (stack interleave with random offsets), and c_zeta (Linear-ReLU-Linear over a modality's
   flattened label vectors) learns the recombined labels. Prediction: p = (mean_m sigmoid(c_zeta([C^m; S^m])) +
   sigmoid(max_m S^gamma_m)) / 2 > threshold (the code's rule).
Loss (Eq. 13): L_suf + lambda_alpha/beta/gamma L_B(S^.) + lambda_r L_rec + lambda_s L_scl
               + lambda_a (L_C + L_S) + lambda_o L_orth + lambda_c L_cml.

Paper (default) vs official code (option) — and choices where the paper is silent:
- shuffle: stack (paper §4.3; `nn.shuffle` "stack") | code (the code's shuffle returns the reversed batch: no
  augmentation) | uniform (CARAT's random permutations) | none. classifier_input: [common, specific] (paper:
  "features derived from C^m and S^m") | [gamma] (code: X_gamma). shuffle_training: joint (L_suf trains
  everything below c_zeta, as the code's L_suf does) | finetune (stop-gradient: only c_zeta learns from L_suf).
- personality: paper (concatenate + inter/intra-person attention, AMER style) | code (the MEmoR-era compiled
  model (P): personality-encoder tokens appended to each modality's sequence before label attention) | none.
  target_roles (ours): a learned role embedding (target token / target person / target segment / other) before
  label-wise attention, so the prediction focuses on the annotated person and moment; the code ignores the
  target (it predicts clip-level label unions).
  person_attention / party_positions: true, segment | false, token (code).
- rec_norm: frobenius (Eq. 7, unsquared, mean over samples) | mse (code); rec_target: detached (ours: joint targets
  collapse X_alpha on synth-party) | joint (code); rec_gamma: weight of the code's extra ||X_alpha - X_gamma||
  term relative to lambda_r (code: 0 on MOSEI, 1 on MEmoR; the MEmoR presets take the code's 1.0).
- orth_pairs: paper (C^m-S^m) | code (+ S^m-S^n); common_semantic: paper (per C^m) | code (label slot 0 of
  sum_m C^m); discriminator: mlp (code; the paper's "linear layers with softmax" is unspecific) | linear.
- contrastive_anchors: batch (Eq. 11) | pool (code: queue rows are anchors too); queue_init: empty | code;
  enqueued rows are detached (the code's queue keeps an autograd history). lambda_unshuffled: CARAT's un-shuffled
  BCE term, 0 (not in Eq. 13; the code computes it without using it).
- intrinsic_eval: hard (code) | soft. ctc_align: false (HEAD) | true (CARAT, (P)) for unaligned sequences.
- Missing modalities (ours; the code never masks): a modality a sample lacks has X_alpha = 0, is left out of the
  alpha-level max, of L_rec, of the alpha contrastive views and prototype update, of L_S, L_orth, and of the
  mean over modalities in the prediction; its reconstructions (beta, gamma) stay, as their purpose is to restore it.
Bug fixes and other deviations (docs/models/ramer.md lists each): the prototype EMA in the closed form of the
code's per-sample loop; no dead parameters (unused personality encoder, pooler, CTC modules); evaluation sees every
validation sample in order, ties keep the earlier epoch, precision/recall are not swapped and weighted-F1 weights by
true support (the code: by predicted support); the adversarial losses always run (HEAD's train.sh omits
--comp_adv_loss and crashes); the code's argparse, metric-arity and config-size crashes have no equivalent;
unaligned MOSEI, M3ED and MEmoR run; on MEmoR the presets select on validation micro-F1 (the MEmoR-era code never
validates and tests the last epoch).
Ablations (paper Table 4): use_common, use_specific, autoencoder, use_beta, use_gamma, fusion_order, lambda_* = 0
(configs/ablations/ramer_table4.yaml).
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
from mmer.models.ramer_parts import AuxiliaryEmbedding
from mmer.nn.adversarial import CommonGenerator, CommonSemanticHead, ModalityDiscriminator, SpecificityNets, orthogonality_loss
from mmer.nn.contrastive import QueueSupConLoss, modality_label_polarity_ids
from mmer.nn.prototypes import LabelPrototypes
from mmer.nn.reconstruction import LatentAutoencoders, TwoLevelReconstruction
from mmer.nn.shuffle import label_shuffle
from mmer.registry import MODELS

CLASSIFIER_INPUTS = ("common", "specific", "gamma")
NN_SHUFFLE_MODE = {"stack": "stack", "uniform": "paper", "code": "reverse"}  # model.shuffle -> nn.shuffle mode


@dataclass
class RAMerConfig(ModelConfig):
    # uni-modal embedding (ref §2.2; official MOSEI values)
    hidden_size: int = 256  # d
    num_layers: int = 3  # encoder layers of every modality not listed in `layers`
    layers: list[int] = field(default_factory=list)  # per-modality layer counts in the data's order; [] = num_layers
    personality_layers: int = 3
    num_heads: int = 8
    intermediate_size: int = 256  # FFN width (code: = d)
    dropout: float = 0.3
    attention_dropout: float = 0.3
    input_norm: bool = True  # the code's LayerNorm over the raw features
    ctc_align: bool = False  # unaligned sequences: CTC pseudo-alignment onto the first modality (CARAT, (P))
    personality: Literal["paper", "code", "none"] = "paper"
    person_attention: bool = True  # inter-/intra-person attention on multi-party data (paper)
    party_positions: Literal["segment", "token"] = "segment"  # encoder positions: segment index (ours) | row (code)
    target_roles: bool = True  # learned role bias of label-wise attention (target token/person/segment; ours)
    target_bias: float = 3.0  # initial label-attention score bonus of the target token (ours)
    # reconstruction and contrastive learning (ref §2.5, 2.8, 2.9)
    latent_size: int = 64  # d_z
    autoencoder: bool = True  # false: Table 4 "w/o eps^m, d^m" (identity encoder/decoder)
    use_beta: bool = True  # false: Table 4 "w/o X_beta"
    use_gamma: bool = True  # false: Table 4 "w/o X_gamma"
    fusion_order: list[str] = field(default_factory=list)  # slot order of g; [] = the data's modality order
    prototype_momentum: float = 0.99
    intrinsic_eval: Literal["hard", "soft"] = "hard"
    queue_size: int = 8192
    temperature: float = 0.07
    contrastive_anchors: Literal["batch", "pool"] = "batch"
    queue_init: Literal["empty", "code"] = "empty"
    contrastive_chunk: int = 512  # anchors per chunk in the memory-efficient SupCon (speed/memory only)
    # adversarial (ref §2.7)
    use_common: bool = True  # false: Table 4 "w/o C"
    use_specific: bool = True  # false: Table 4 "w/o S"
    specific_dropout: float = 0.1
    common_dropout: float = 0.3
    discriminator: Literal["mlp", "linear"] = "mlp"
    grl_lambda: float = 1.0
    orth_pairs: Literal["paper", "code"] = "paper"
    common_semantic: Literal["paper", "code"] = "paper"
    # stack shuffle and c_zeta (§4.3; ref §2.10)
    shuffle: Literal["stack", "uniform", "code", "none"] = "stack"
    shuffle_stacks: int = 4  # k (code: 4 sample stacks; modality stacks = number of modalities)
    shuffle_iterations: int = 2  # code
    shuffle_training: Literal["joint", "finetune"] = "joint"
    classifier_input: list[str] = field(default_factory=lambda: ["common", "specific"])  # code: [gamma]
    classifier_hidden: int = 256
    # loss weights (Eq. 5, 8, 13; code values for CMU-MOSEI)
    lambda_alpha: float = 0.01
    lambda_beta: float = 0.1
    lambda_gamma: float = 1.0
    lambda_rec: float = 1.0  # lambda_r
    rec_norm: Literal["frobenius", "mse"] = "frobenius"
    rec_gamma: float = 0.0  # weight of the code's ||X_alpha - X_gamma|| term, relative to lambda_r
    rec_target: Literal["detached", "joint"] = "detached"  # joint = code: X_alpha is also pulled towards X~, X_beta
    lambda_scl: float = 1.0  # lambda_s
    lambda_suf: float = 1.0  # weight of L_cls^suf (1 in Eq. 13)
    lambda_unshuffled: float = 0.0  # BCE of c_zeta on the un-shuffled features (CARAT's extra term; not in Eq. 13)
    lambda_adv: float = 0.01  # lambda_a
    lambda_orth: float = 5e-6  # lambda_o
    lambda_cml: float = 0.5  # lambda_c


@dataclass
class RAMerState:
    """Intermediate representations of one forward pass ([B, M, C, .] unless noted)."""

    x_alpha: Tensor
    present: Tensor  # bool [B, M]
    z_alpha: Tensor  # [B, M, C, d_z]
    x_tilde: Tensor
    x_beta: Tensor | None
    x_gamma: Tensor | None
    top: Tensor  # the last reconstruction level (gamma, else beta, else alpha)
    specific: Tensor | None  # S^m
    common: Tensor | None  # C^m
    head_input: Tensor  # [B, M, C, k d]


@MODELS.register("ramer", options=RAMerConfig, summary="RAMer (IJCAI 2025): reconstruction-based adversarial model with personality and stack shuffle")
class RAMer(MMERModel):
    def __init__(self, cfg: RAMerConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self._validate(cfg, spec)
        d, m, c = cfg.hidden_size, len(spec.modalities), spec.num_labels
        latent = cfg.latent_size if cfg.autoencoder else d
        self.embedding = AuxiliaryEmbedding(cfg, spec)
        self.autoencoders = LatentAutoencoders(m, d, cfg.latent_size) if cfg.autoencoder else None
        self.prototypes = LabelPrototypes(m, c, latent, cfg.prototype_momentum, cfg.intrinsic_eval)
        order = [spec.modality_names.index(name) for name in cfg.fusion_order] or None
        self.reconstruction = TwoLevelReconstruction(m, d, order) if cfg.use_beta or cfg.use_gamma else None
        self.label_weight = nn.Parameter(torch.empty(m, c, d))  # W_m [C, d] per modality, no bias
        for w in self.label_weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # as nn.Linear(d, C, bias=False), the code's init
        self.contrastive = QueueSupConLoss(latent, cfg.queue_size, cfg.temperature, cfg.contrastive_anchors, cfg.queue_init, cfg.contrastive_chunk)
        self.specificity = SpecificityNets(m, d, cfg.specific_dropout) if cfg.use_specific else None
        self.generator = CommonGenerator(d, cfg.common_dropout) if cfg.use_common else None
        adversarial = cfg.use_common or cfg.use_specific
        self.discriminator = ModalityDiscriminator(d, m, cfg.discriminator) if adversarial and cfg.lambda_adv > 0 else None
        self.common_head = CommonSemanticHead(d, c, cfg.common_semantic) if cfg.use_common and cfg.lambda_cml > 0 else None
        width = c * d * len(cfg.classifier_input)
        self.classifier = nn.Sequential(nn.Linear(width, cfg.classifier_hidden), nn.ReLU(), nn.Linear(cfg.classifier_hidden, c))
        for layer in (self.classifier[0], self.classifier[2]):
            nn.init.xavier_uniform_(layer.weight)

    @staticmethod
    def _validate(cfg: RAMerConfig, spec: DataSpec) -> None:
        names = spec.modality_names
        if cfg.hidden_size % cfg.num_heads:
            raise ConfigError(f"model.hidden_size={cfg.hidden_size} must be divisible by model.num_heads={cfg.num_heads}")
        if cfg.layers and (len(cfg.layers) != len(names) or min(cfg.layers) < 0):
            raise ConfigError(f"model.layers must give a layer count >= 0 for each of {', '.join(names)} (in that order), got {cfg.layers}")
        if cfg.fusion_order and sorted(cfg.fusion_order) != sorted(names):
            raise ConfigError(f"model.fusion_order must list each of {', '.join(names)} once, got {cfg.fusion_order}")
        bad = [x for x in cfg.classifier_input if x not in CLASSIFIER_INPUTS]
        if bad or not cfg.classifier_input or len(set(cfg.classifier_input)) != len(cfg.classifier_input):
            raise ConfigError(f"model.classifier_input must be a non-empty list of distinct {', '.join(CLASSIFIER_INPUTS)}, got {cfg.classifier_input}")
        for part, key in (("common", "use_common"), ("specific", "use_specific")):
            if part in cfg.classifier_input and not getattr(cfg, key):
                raise ConfigError(f"model.classifier_input contains '{part}' but model.{key} is false; remove it from the list")
        if cfg.ctc_align and spec.multi_party:
            raise ConfigError("model.ctc_align aligns unaligned sequences; multi-party data is already on one token grid")
        positive = ("hidden_size", "latent_size", "classifier_hidden", "shuffle_stacks", "shuffle_iterations", "contrastive_chunk")
        for key in positive:
            if getattr(cfg, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(cfg, key)}")
        for key in [f.name for f in cfg.__dataclass_fields__.values() if f.name.startswith("lambda_")] + ["rec_gamma"]:
            if getattr(cfg, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(cfg, key)}")

    # ------------------------------------------------------------------------------------- representations

    def _encode(self, x: Tensor) -> Tensor:
        return self.autoencoders.encode(x) if self.autoencoders is not None else x  # [B, M, C, d_z]

    def _decode(self, z: Tensor) -> Tensor:
        return self.autoencoders.decode(z) if self.autoencoders is not None else z  # [B, M, C, d]

    def represent(self, batch: Batch) -> RAMerState:
        cfg = self.cfg
        x_alpha, present = self.embedding(batch)  # [B, M, C, d], [B, M]
        z_alpha = self._encode(x_alpha)
        x_tilde = self._decode(z_alpha)
        x_beta = x_gamma = None
        if self.reconstruction is not None:
            intrinsic = self._decode(self.prototypes.intrinsic(z_alpha))  # D~ [B, M, C, d]
            first = self.reconstruction.first_level(intrinsic, x_tilde)
            if cfg.use_beta and cfg.use_gamma:
                x_beta, x_gamma = first, self.reconstruction.second_level(first)
            elif cfg.use_beta:
                x_beta = first
            else:  # "w/o X_beta": one level, which is X_gamma
                x_gamma = first
        top = next(x for x in (x_gamma, x_beta, x_alpha) if x is not None)
        present_f = present[:, :, None, None].to(x_alpha.dtype)  # [B, M, 1, 1]
        specific = torch.stack(self.specificity(list(x_alpha.unbind(1))), dim=1) * present_f if self.specificity is not None else None  # [B, M, C, d]
        common = torch.stack(self.generator(list(top.unbind(1))), dim=1) if self.generator is not None else None  # [B, M, C, d]
        parts = {"common": common, "specific": specific, "gamma": top}
        head_input = torch.cat([parts[name] for name in cfg.classifier_input], dim=-1)  # [B, M, C, k d]
        return RAMerState(x_alpha, present, z_alpha, x_tilde, x_beta, x_gamma, top, specific, common, head_input)

    def level_logits(self, x: Tensor) -> Tensor:
        """Per-modality label logits <X[b, m, l], W_m[l]>: [B, M, C]."""
        return torch.einsum("bmcd,mcd->bmc", x, self.label_weight.to(x.dtype))

    @staticmethod
    def max_over_modalities(logits: Tensor, present: Tensor | None = None) -> Tensor:
        """S = max_m logits [B, C]; with `present` [B, M] only the modalities a sample has (0 if none)."""
        if present is None:
            return logits.max(dim=1).values
        masked = logits.masked_fill(~present[:, :, None], float("-inf")).max(dim=1).values
        return torch.where(present.any(dim=1, keepdim=True), masked, torch.zeros_like(masked))

    def classify(self, head_input: Tensor) -> Tensor:
        """c_zeta over each modality's flattened label vectors: [B, M, C, k d] -> logits [B, M, C]."""
        return self.classifier(head_input.flatten(2))

    def forward(self, batch: Batch) -> ModelOutput:
        state = self.represent(batch)
        top_logits = self.max_over_modalities(self.level_logits(state.top), None if state.top is not state.x_alpha else state.present)  # [B, C]
        head_logits = self.classify(state.head_input)  # [B, M, C]
        weights = state.present.to(head_logits.dtype)
        weights = torch.where(state.present.any(dim=1, keepdim=True), weights, torch.ones_like(weights))  # [B, M]
        p_head = (torch.sigmoid(head_logits) * weights[:, :, None]).sum(1) / weights.sum(1, keepdim=True)  # [B, C]
        probs = 0.5 * (p_head + torch.sigmoid(top_logits))  # the code's prediction rule
        losses = self._losses(state, batch.labels, head_logits) if self.training else {}
        return ModelOutput(probs, losses)

    # ---------------------------------------------------------------------------------------------- losses

    def loss_weights(self) -> dict[str, float]:
        cfg = self.cfg
        return {
            "cls_alpha": cfg.lambda_alpha, "cls_beta": cfg.lambda_beta, "cls_gamma": cfg.lambda_gamma,
            "rec": cfg.lambda_rec, "rec_gamma": cfg.lambda_rec * cfg.rec_gamma, "scl": cfg.lambda_scl,
            "suf": cfg.lambda_suf, "unshuffled": cfg.lambda_unshuffled,
            "adv_common": cfg.lambda_adv, "adv_specific": cfg.lambda_adv, "orth": cfg.lambda_orth, "cml": cfg.lambda_cml,
        }  # fmt: skip

    def _losses(self, s: RAMerState, y: Tensor, head_logits: Tensor) -> dict[str, Tensor]:
        cfg, w = self.cfg, self.loss_weights()
        losses: dict[str, Tensor] = {}
        for name, x in (("alpha", s.x_alpha), ("beta", s.x_beta), ("gamma", s.x_gamma)):
            if x is not None and w[f"cls_{name}"] > 0:
                present = s.present if name == "alpha" else None
                losses[f"cls_{name}"] = F.binary_cross_entropy_with_logits(self.max_over_modalities(self.level_logits(x), present), y)
        if w["rec"] > 0:
            pairs = ([s.x_tilde] if self.autoencoders is not None else []) + ([s.x_beta] if s.x_beta is not None else [])
            if pairs:
                losses["rec"] = sum(self._distance(s.x_alpha, x, s.present) for x in pairs)
        if w["rec_gamma"] > 0 and s.x_gamma is not None:
            losses["rec_gamma"] = self._distance(s.x_alpha, s.x_gamma, s.present)
        losses.update(self._adversarial_losses(s, y))
        if w["suf"] > 0:
            features = s.head_input.detach() if cfg.shuffle_training == "finetune" else s.head_input
            if cfg.shuffle == "none":
                target = y.unsqueeze(1).expand_as(head_logits)
                shuffled_logits = head_logits if cfg.shuffle_training == "joint" else self.classify(features)
            else:
                mixed, target = label_shuffle(
                    features, y, NN_SHUFFLE_MODE[cfg.shuffle], sample_stacks=cfg.shuffle_stacks, iterations=cfg.shuffle_iterations
                )  # [B, M, C, k d], [B, M, C]
                shuffled_logits = self.classify(mixed)
            losses["suf"] = F.binary_cross_entropy_with_logits(shuffled_logits, target)
        if w["unshuffled"] > 0:
            losses["unshuffled"] = F.binary_cross_entropy_with_logits(head_logits, y.unsqueeze(1).expand_as(head_logits))
        losses.update(self._contrastive_loss(s, y))  # last: it writes the queue and the prototypes
        return losses

    def _distance(self, target: Tensor, x: Tensor, present: Tensor) -> Tensor:
        """Sum over modalities of the mean over samples having m of ||X_alpha - X||_F (Eq. 7) or the MSE (code)."""
        if self.cfg.rec_target == "detached":
            target = target.detach()
        diff = (target - x).flatten(2)  # [B, M, C d]
        per = diff.pow(2).sum(-1).clamp_min(1e-12).sqrt() if self.cfg.rec_norm == "frobenius" else diff.pow(2).mean(-1)
        weight = present.to(per.dtype)  # [B, M]
        return ((per * weight).sum(0) / weight.sum(0).clamp(min=1.0)).sum()

    def _adversarial_losses(self, s: RAMerState, y: Tensor) -> dict[str, Tensor]:
        cfg, out = self.cfg, {}
        c = s.x_alpha.shape[2]
        masks = [s.present[:, m, None].expand(-1, c) for m in range(s.present.shape[1])]  # [B, C] per modality
        commons = list(s.common.unbind(1)) if s.common is not None else None
        specifics = list(s.specific.unbind(1)) if s.specific is not None else None
        if self.discriminator is not None:
            if commons is not None:
                out["adv_common"] = self.discriminator.modality_loss(commons, reverse=cfg.grl_lambda)
            if specifics is not None:
                out["adv_specific"] = self.discriminator.modality_loss(specifics, masks)
        if commons is not None and specifics is not None and cfg.lambda_orth > 0:
            out["orth"] = orthogonality_loss(commons, specifics, masks, cfg.orth_pairs)
        if self.common_head is not None and commons is not None:
            out["cml"] = self.common_head.loss(commons, y)
        return out

    def _contrastive_loss(self, s: RAMerState, y: Tensor) -> dict[str, Tensor]:
        """L_scl over the alpha/beta/gamma views (absent alpha views left out); then queue and prototype updates."""
        views, keep = [s.z_alpha], [s.present]
        for x in (s.x_beta, s.x_gamma):
            if x is not None:
                views.append(self._encode(x))
                keep.append(torch.ones_like(s.present))
        z = torch.cat(views, dim=1)  # [B, V, C, d_z] with V = levels x M
        m = s.present.shape[1]
        ids = modality_label_polarity_ids(y, [v % m for v in range(z.shape[1])])  # [B, V, C]
        rows = torch.cat(keep, dim=1)[:, :, None].expand_as(ids).reshape(-1)  # [B V C]
        out = {}
        if self.cfg.lambda_scl > 0:
            out["scl"] = self.contrastive(z.reshape(-1, z.shape[-1])[rows], ids.reshape(-1)[rows])
        self.prototypes.update(s.z_alpha, y, s.present)
        return out

    # -------------------------------------------------------------------------------------------- analysis

    @torch.no_grad()
    def analysis(self, batch: Batch) -> dict[str, Tensor]:
        was_training = self.training
        self.eval()
        try:
            s = self.represent(batch)
            out = {"modality_label": self.level_logits(s.top), "reconstructed": self._encode(s.top).mean(dim=2)}
            if s.common is not None:
                out["common"] = s.common.mean(dim=2)  # [B, M, d]
                if self.discriminator is not None:
                    out["discriminator_probs"] = torch.softmax(self.discriminator(s.common.flatten(1, 2)), -1).view(*s.common.shape[:3], -1).mean(2)
            if s.specific is not None:
                out["specific"] = s.specific.mean(dim=2)
            return out
        finally:
            self.train(was_training)
