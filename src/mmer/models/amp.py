"""`amp`: AMP (Ge et al., WWW 2023) — encoder-decoder MMER model trained with Adversarial Temporal Masking (ATM)
and Adversarial Parameter Perturbation (APP). Paper: papers/amp_www2023.txt; official code: reference/amp_official_code.md.

Model (paper §3.2, code §2): per modality Linear -> LayerNorm -> Dropout to d; a uni-modal transformer encoder E^x
per modality x; the multi-modal encoder E^m over the concatenated token sequences; an emotion decoder D whose K
learnable label queries attend to E^m's output; a sigmoid classifier per label. Transformers are PyTorch's
post-LN layers (ReLU, d 512, FFN 1024, 8 heads, dropout 0.1, LN eps 1e-5) with a final LayerNorm, no positions;
every parameter with more than one dimension is Xavier-uniform initialised (code). Any number of modalities.

Training step (Algorithm 1, Eq. 15): L = L_r + rho L_m + sigma L_p, three backward passes, one optimizer step.
- L_r: task loss on the clean pass.
- ATM (Eq. 4-11): masking network M^x = sigmoid(H^x w + b) over the clean uni-modal outputs, SOFT top-k
  (`mmer.nn.soft_topk`, entropic OT, eps 0.1, 100 Sinkhorn iterations, implicit gradient) selects
  round(mask_ratio * n) units per sequence, masked input x_hat = (1 - A) * x, L_m = task loss of the masked pass.
  The masking networks receive -grl_lambda * rho * grad L_m through a gradient reversal layer (min-max).
- APP (Eq. 12-14): perturb E^m's attention and feed-forward weights by gamma * g / ||g||, g = grad L_r, run the
  clean input through the perturbed model, L_p = KL(p(y*) || p(y~*)) with the clean prediction as a constant
  target, back-propagate at the perturbed point, restore the weights (`mmer.nn.perturbation`, restores on errors).

Memory and work (what makes this faster and leaner than the official step, with the same gradients):
- The masked branch is not run at evaluation (outputs unchanged) nor in the perturbed pass (discarded there).
- The step keeps at most one full graph alive: the clean graph is cut between the uni-modal encoders and E^m;
  L_r back-propagates through E^m and D at once, the perturbed pass reuses the clean uni-modal outputs H^x
  (Algorithm 1 line 15 feeds E^x(x^x) unperturbed; only E^m is perturbed), and one backward through the
  uni-modal encoders then carries dL_r/dH + sigma dL_p/dH together. The masked pass runs last, after that graph
  is freed. (Deviation from the code: the perturbed pass shares the clean pass's dropout masks in the uni-modal
  encoders instead of drawing new ones.) Options that need more (`app_scope` with `unimodal`, code-style
  `app_direction`, `reverse_into_encoders`, `mask_at: embedding`) reorder the stages and keep graphs longer.
- In training, the encoders' self-attention runs through `mmer.nn.encoders.dropout_attention` (keeps a uint8 dropout
  mask and the log-sum-exp, recomputes the probabilities in backward) and every dropout is `FastDropout`: the same
  function as PyTorch's layers with less memory and RNG time. `activation_checkpointing: true` also recomputes the
  uni-modal encoders in backward (~12% more compute, roughly half the activation memory).

Paper (default) vs official code (option), see docs/models/amp.md for the full list:
- loss: bce (Eq. 2-3) | asl (code: Asymmetric loss, gamma- 2, gamma+ 1, clip 0.05, x1000 / (B K)).
- encoder_layers: 4 (§4.1.3) | 3 (code). classifier: per_label ("K linear classifiers") | shared (code: one
  Linear(d, 1) with dropout on the logit). Scorer bias: position (b in R^L, Eq. 6) | scalar (code).
- mask_at: input (Eq. 10, Algorithm 1 line 9) | embedding (code: the projected, dropped-out embedding).
  Top-k selects the k highest scores (Eq. 7); the code marks the k lowest — the same operator under s -> 1 - s,
  which the learned, symmetric-initialised scorer absorbs.
- reverse_into_encoders: false (Eq. 11 reverses only theta_M; the scorer reads H^x detached) | true (code: the
  reversed gradient also flows through the scorer input into E^x and the projection).
- APP: app_params [attention, ffn] weights of E^m (§3.4) | [all] (code: every tensor incl. biases and LN);
  app_norm global (||eps|| <= gamma, Eq. 12) | tensor (code: each tensor moved by gamma);
  app_direction clean (g = grad L_r, Eq. 14) | accumulated (code: grad(L_r + rho L_m));
  app_kl bernoulli (our reading of KL(p || p~) for multi-label sigmoid outputs: per-label Bernoulli KL, mean over
  B x K) | softmax (code: KL of softmaxes over the labels of the probabilities, element mean).
- masks: true respects key padding in attention and never selects/counts padding in the top-k | false (code:
  zero padding is data). Optimizer weight decay applies to every parameter (code; the paper is silent).
- Training: batch 64 (§4.1.3) | 128 (code); schedule warmup_cosine over the first 10 iterations |
  epoch_warmup_cosine (code: stepped per epoch, it never leaves warm-up); selection on micro-F1 (§4.1.3) | acc.
- Not reproduced: the code's -inf score filling in the top-k (scores are sigmoids); its unreachable paths
  (unaligned MOSEI, NEMu batches on a 3-modality model); like the code, the soft mask is not clamped to <= 1.
Multi-party batches: the whole token grid is encoded; a learned target-marker vector is added to the target
token(s) of every modality (`mmer.nn.party.TargetMarker`); personality traits are not used (AMP has none).
Ablations of the paper's Table 2: `exclude_modalities`, `fusion_encoder`, `decoder`, `atm`, `mask_source`,
`gradient_reversal`, `app`, `app_noise`, `app_params`, `input_perturbation` (configs/ablations/amp_table2.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmer.config import RESOURCE_ONLY, ModelConfig
from mmer.data.batch import Batch
from mmer.data.dataset import DataSpec
from mmer.errors import ConfigError
from mmer.models.base import MMERModel, ModelOutput
from mmer.nn.adversarial import grad_reverse
from mmer.nn.dropout import FastDropout
from mmer.nn.encoders import dropout_attention
from mmer.nn.masking import masked_mean
from mmer.nn.party import TargetMarker
from mmer.nn.perturbation import fgsm_step, gaussian_noise, perturbed_parameters, pgd_update, random_erasing
from mmer.nn.soft_topk import soft_topk
from mmer.registry import MODELS

if TYPE_CHECKING:
    from mmer.engine.context import StepContext

APP_SCOPES = ("multimodal", "unimodal", "decoder")
APP_PARAMS = ("attention", "ffn", "all")


@dataclass
class AMPConfig(ModelConfig):
    # architecture
    d_model: int = 512
    num_heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    encoder_layers: int = 4  # paper 4; official code 3
    decoder_layers: int = 1
    classifier: Literal["per_label", "shared"] = "per_label"  # shared = code (one Linear(d, 1) + logit dropout)
    masks: bool = True  # respect padding masks (false = code: every token is data)
    learned_positions: bool = False  # learned position table per modality (not in the paper or the used code)
    modality_embeddings: bool = False  # learned modality vector added before E^m (the code's unused NEMu design)
    activation_checkpointing: bool = field(default=False, metadata=RESOURCE_ONLY)  # recompute the uni-modal encoders in backward: less memory, more compute
    exclude_modalities: list[str] = field(default_factory=list)  # ablation "-E^x and x^x"
    fusion_encoder: bool = True  # false: ablation "-E^m" (D reads the concatenated uni-modal outputs)
    decoder: bool = True  # false: ablation "-D" (linear classifier over E^m's masked mean)
    loss: Literal["bce", "asl"] = "bce"  # asl = code
    # adversarial temporal masking
    atm: bool = True
    rho: float = 0.1  # weight of L_m (Eq. 15)
    mask_ratio: float = 0.4  # share of each sequence's real units masked (Fig. 4a; code k = 24 of 60)
    mask_source: Literal["adversarial", "random"] = "adversarial"  # random: ablation "-M (+ random mask)"
    mask_at: Literal["input", "embedding"] = "input"  # embedding = code
    scorer_bias: Literal["position", "scalar"] = "position"  # scalar = code
    grl_lambda: float = 0.1  # alpha of the paper; the code's GradReverse constant
    gradient_reversal: bool = True  # false: ablation "-adversarial gradient reversal" (scorers get +lambda grad)
    reverse_into_encoders: bool = False  # true = code
    sinkhorn_epsilon: float = 0.1
    sinkhorn_iters: int = 100
    topk_gradient: Literal["implicit", "unrolled"] = "implicit"
    # adversarial parameter perturbation
    app: bool = True
    sigma: float = 1.0  # weight of L_p (Eq. 15)
    gamma: float = 1.0  # perturbation radius (code default)
    app_scope: list[str] = field(default_factory=lambda: ["multimodal"])  # of multimodal, unimodal, decoder
    app_params: list[str] = field(default_factory=lambda: ["attention", "ffn"])  # of attention, ffn, all (= code)
    app_norm: Literal["global", "tensor"] = "global"  # tensor = code
    app_direction: Literal["clean", "accumulated"] = "clean"  # accumulated = code
    app_noise: Literal["gradient", "random"] = "gradient"  # random: ablation "-g (+ random perturbation)"
    app_kl: Literal["bernoulli", "softmax"] = "bernoulli"  # softmax = code
    # the baselines that replace ATM + APP in Table 2's last rows
    input_perturbation: Literal["none", "fgsm", "pgd", "erasing", "gaussian"] = "none"
    input_epsilon: float = 0.05  # FGSM/PGD L-inf radius on the (LayerNorm-scaled) input embeddings
    pgd_steps: int = 3
    noise_std: float = 0.1  # Gaussian noise std relative to the batch's feature std


def asymmetric_loss(probs: Tensor, labels: Tensor, gamma_neg: float = 2.0, gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-5, scale: float = 1000.0) -> Tensor:
    """The official code's loss (Ridnik et al.'s ASL) on probabilities [B, K]: -scale * mean of w * log-likelihood,
    negatives shifted by `clip` (p < clip costs nothing), focusing weights kept in the graph as in the code."""
    p_neg = (1.0 - probs + clip).clamp(max=1.0)
    log_lik = labels * probs.clamp(min=eps).log() + (1.0 - labels) * p_neg.clamp(min=eps).log()
    weight = torch.where(labels > 0.5, (1.0 - probs).pow(gamma_pos), (1.0 - p_neg).pow(gamma_neg))
    return -scale * (weight * log_lik).mean()


def consistency_kl(clean_logits: Tensor, perturbed_logits: Tensor, kind: str) -> Tensor:
    """L_p = KL(p(y* | theta) || p(y~* | theta + eps)); the clean side is a constant target. [B, K] logits."""
    target = clean_logits.detach()
    if kind == "softmax":  # code: softmax over the labels of the *probabilities*, element mean (B x K)
        p = F.softmax(torch.sigmoid(target), dim=-1)
        log_q = F.log_softmax(torch.sigmoid(perturbed_logits), dim=-1)
        return (p * (p.log() - log_q)).mean()
    p = torch.sigmoid(target)
    kl = p * (F.logsigmoid(target) - F.logsigmoid(perturbed_logits)) + (1.0 - p) * (F.logsigmoid(-target) - F.logsigmoid(-perturbed_logits))
    return kl.mean()


class _EncoderLayer(nn.TransformerEncoderLayer):
    """PyTorch's encoder layer — same parameters, same function — whose training-time self-attention goes through
    `mmer.nn.encoders.dropout_attention`. With attention dropout PyTorch's CPU attention takes its math path and
    keeps about four probability-sized float tensors per layer for backward; this keeps a uint8 dropout mask and the
    rows' log-sum-exp and recomputes the probabilities in backward (~30% less activation memory per AMP pass).
    Evaluation and dropout-free training use PyTorch's own path unchanged."""

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool = False) -> Tensor:
        attn = self.self_attn
        if not self.training or attn.dropout == 0.0 or attn_mask is not None or is_causal:
            return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)
        b, length, d = x.shape
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, length, 3, attn.num_heads, d // attn.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, L, d/h]
        # key_padding_mask arrives as PyTorch's additive float mask (0 or -inf) [B, L]
        bias = x.new_zeros(1, 1, 1, length) if key_padding_mask is None else key_padding_mask[:, None, None, :].to(x.dtype)
        out = dropout_attention(q, k, v, bias, attn.dropout)  # [B, h, L, d/h]
        return self.dropout1(attn.out_proj(out.transpose(1, 2).reshape(b, length, d)))


def _fast_dropout(module: nn.Module) -> None:
    """Swap every nn.Dropout below `module` for `FastDropout` (same distribution up to p rounded to 2^-16, a
    4-5x cheaper mask on CPU; `mmer.nn.dropout`)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout):
            setattr(module, name, FastDropout(child.p))
        else:
            _fast_dropout(child)


def _encoder(cfg: AMPConfig, layers: int) -> nn.TransformerEncoder:
    layer = _EncoderLayer(cfg.d_model, cfg.num_heads, cfg.ffn_dim, cfg.dropout, layer_norm_eps=cfg.layer_norm_eps, batch_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps), enable_nested_tensor=False)


def _key_padding(mask: Tensor | None) -> Tensor | None:
    """bool [B, L] real-token mask -> PyTorch key_padding_mask (True = ignore), or None when nothing is padded.
    A row with no real token keeps key 0 so attention stays finite; its outputs are excluded downstream."""
    if mask is None or bool(mask.all()):
        return None
    keys = mask.clone()
    keys[~mask.any(dim=1), 0] = True
    return ~keys


@MODELS.register("amp", options=AMPConfig, summary="AMP (WWW 2023): encoder-decoder + adversarial temporal masking + adversarial parameter perturbation")
class AMP(MMERModel):
    supports_micro_batches = False  # APP's direction is the gradient of the whole batch's clean loss (Eq. 14)

    def __init__(self, cfg: AMPConfig, spec: DataSpec):
        super().__init__(cfg, spec)
        self._validate(cfg, spec)
        d = cfg.d_model
        self.modalities = tuple(m for m in spec.modality_names if m not in cfg.exclude_modalities)
        mods = [spec.modality(m) for m in self.modalities]
        self.embed = nn.ModuleDict({m.name: nn.Sequential(nn.Linear(m.dim, d), nn.LayerNorm(d, eps=cfg.layer_norm_eps), nn.Dropout(cfg.dropout)) for m in mods})
        self.positions = nn.ParameterDict({m.name: nn.Parameter(torch.empty(m.max_len, d)) for m in mods}) if cfg.learned_positions else None
        self.target_marker = TargetMarker(d) if spec.multi_party else None
        self.unimodal = nn.ModuleDict({m: _encoder(cfg, cfg.encoder_layers) for m in self.modalities})
        self.modality_embedding = nn.Parameter(torch.empty(len(mods), d)) if cfg.modality_embeddings else None
        self.fusion = _encoder(cfg, cfg.encoder_layers) if cfg.fusion_encoder else None
        k = spec.num_labels
        if cfg.decoder:
            self.queries = nn.Parameter(torch.empty(k, d))  # the label embeddings (code: nn.Embedding(K, d))
            layer = nn.TransformerDecoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, layer_norm_eps=cfg.layer_norm_eps, batch_first=True)
            self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers, norm=nn.LayerNorm(d, eps=cfg.layer_norm_eps))
            shared = cfg.classifier == "shared"
            self.label_weight = nn.Parameter(torch.empty(1 if shared else k, d))  # row l = classifier of label l
            self.label_bias = nn.Parameter(torch.empty(1 if shared else k))
            self.logit_dropout = nn.Dropout(cfg.dropout if shared else 0.0)
        else:
            self.pooled_head = nn.Linear(d, k)
        self.scorers = nn.ModuleDict({m: nn.Linear(d, 1) for m in self.modalities})
        if cfg.scorer_bias == "position":
            for m in mods:
                self.scorers[m.name].bias = None
            self.scorer_bias = nn.ParameterDict({m.name: nn.Parameter(torch.empty(m.max_len)) for m in mods})
        self._reset_parameters()
        _fast_dropout(self)
        self._app_targets = self._select_app_targets()

    @staticmethod
    def _validate(cfg: AMPConfig, spec: DataSpec) -> None:
        names = spec.modality_names
        for m in cfg.exclude_modalities:
            if m not in names:
                raise ConfigError(f"model.exclude_modalities: unknown modality '{m}'; dataset '{spec.name}' has {', '.join(names)}")
        if len(set(names) - set(cfg.exclude_modalities)) == 0:
            raise ConfigError(f"model.exclude_modalities removes every modality of '{spec.name}'")
        if cfg.d_model % cfg.num_heads:
            raise ConfigError(f"model.d_model={cfg.d_model} must be divisible by model.num_heads={cfg.num_heads}")
        if not 0.0 < cfg.mask_ratio < 1.0:
            raise ConfigError(f"model.mask_ratio must be in (0, 1), got {cfg.mask_ratio}")
        for key, values, allowed in (("app_scope", cfg.app_scope, APP_SCOPES), ("app_params", cfg.app_params, APP_PARAMS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"model.{key} must be a non-empty list of {', '.join(allowed)}, got {values}")
        if cfg.app and "multimodal" in cfg.app_scope and not cfg.fusion_encoder and len(cfg.app_scope) == 1:
            raise ConfigError("model.app_scope=[multimodal] perturbs nothing when model.fusion_encoder is false; use e.g. model.app_scope=[unimodal]")
        if cfg.app and "decoder" in cfg.app_scope and not cfg.decoder and len(cfg.app_scope) == 1:
            raise ConfigError("model.app_scope=[decoder] perturbs nothing when model.decoder is false")
        if cfg.input_perturbation != "none" and (cfg.atm or cfg.app):
            raise ConfigError(f"model.input_perturbation={cfg.input_perturbation} replaces ATM and APP (Table 2); also set model.atm=false and model.app=false")
        if cfg.encoder_layers < 1 or cfg.decoder_layers < 1 or cfg.sinkhorn_iters < 1 or cfg.pgd_steps < 1:
            raise ConfigError("model.encoder_layers, model.decoder_layers, model.sinkhorn_iters and model.pgd_steps must be >= 1")

    def _reset_parameters(self) -> None:
        """Xavier-uniform on every matrix (code); per-label classifiers as K separate Linear(d, 1) layers."""
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("label_weight"):
                nn.init.xavier_uniform_(p)
        d = self.cfg.d_model
        if self.cfg.decoder:
            nn.init.uniform_(self.label_weight, -math.sqrt(6.0 / (d + 1)), math.sqrt(6.0 / (d + 1)))
            nn.init.uniform_(self.label_bias, -1.0 / math.sqrt(d), 1.0 / math.sqrt(d))  # nn.Linear's bias default
        if self.cfg.scorer_bias == "position":
            for p in self.scorer_bias.values():
                nn.init.uniform_(p, -1.0 / math.sqrt(d), 1.0 / math.sqrt(d))

    def _select_app_targets(self) -> list[nn.Parameter]:
        """Parameters APP perturbs: by scope (which modules) and kind (attention / FFN weights, or all tensors)."""
        modules: list[nn.Module] = []
        if "multimodal" in self.cfg.app_scope and self.fusion is not None:
            modules.append(self.fusion)
        if "unimodal" in self.cfg.app_scope:
            modules.extend(self.unimodal.values())
        if "decoder" in self.cfg.app_scope and self.cfg.decoder:
            modules.append(self.decoder)
        kinds = set(self.cfg.app_params)
        out = []
        for module in modules:
            for name, p in module.named_parameters():
                attention = ("self_attn." in name or "multihead_attn." in name) and name.endswith("weight")
                ffn = name.endswith(("linear1.weight", "linear2.weight"))
                if "all" in kinds or ("attention" in kinds and attention) or ("ffn" in kinds and ffn):
                    out.append(p)
        return out

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """One group: the official code decays every parameter (the paper does not say)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    # ------------------------------------------------------------------------------------- the model

    def _inputs(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        missing = [m for m in self.modalities if m not in batch.features]
        if missing:
            raise ValueError(f"batch lacks modalities {missing} that this AMP model was built for")
        x = {m: batch.features[m] for m in self.modalities}  # [B, L_m, D_m]
        if self.cfg.masks:
            masks = {m: batch.masks[m] for m in self.modalities}  # [B, L_m]
        else:
            masks = {m: torch.ones(v.shape[:2], dtype=torch.bool, device=v.device) for m, v in x.items()}
        return x, masks

    def embed_inputs(self, x: dict[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Linear -> LayerNorm -> Dropout per modality (+ positions, + target marker): [B, L_m, d]."""
        out = {}
        for m, v in x.items():
            h = self.embed[m](v)
            if self.positions is not None:
                h = h + self.positions[m][: h.shape[1]]
            if self.target_marker is not None:
                h = self.target_marker(h, batch.party)
            out[m] = h
        return out

    def encode_unimodal(self, emb: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """E^x per modality x: [B, L_x, d]. With activation checkpointing their activations are not kept; backward
        recomputes them (same dropout masks: the RNG state is replayed)."""
        recompute = self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        out = {}
        for m, h in emb.items():
            padding = _key_padding(masks[m])
            if recompute:
                out[m] = checkpoint(self.unimodal[m], h, None, padding, use_reentrant=False)
            else:
                out[m] = self.unimodal[m](h, src_key_padding_mask=padding)
        return out

    def fuse_and_classify(self, hidden: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """E^m over the concatenated uni-modal outputs, then D and the classifiers: logits [B, K]."""
        parts = list(hidden.values())
        if self.modality_embedding is not None:
            parts = [h + self.modality_embedding[i] for i, h in enumerate(parts)]
        tokens = torch.cat(parts, dim=1)  # [B, sum L_m, d]
        mask = torch.cat([masks[m] for m in hidden], dim=1)  # [B, sum L_m]
        padding = _key_padding(mask)
        memory = self.fusion(tokens, src_key_padding_mask=padding) if self.fusion is not None else tokens
        if not self.cfg.decoder:
            return self.pooled_head(masked_mean(memory, mask))
        queries = self.queries.unsqueeze(0).expand(memory.shape[0], -1, -1)  # [B, K, d]
        out = self.decoder(queries, memory, memory_key_padding_mask=padding)  # [B, K, d]
        return self.logit_dropout((out * self.label_weight).sum(-1) + self.label_bias)  # [B, K]

    def task_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.cfg.loss == "asl":
            return asymmetric_loss(torch.sigmoid(logits), labels)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def forward(self, batch: Batch) -> ModelOutput:
        """Clean prediction; in training mode also L_r and (with ATM) L_m. APP needs gradients: see training_step."""
        x, masks = self._inputs(batch)
        emb = self.embed_inputs(x, batch)
        hidden = self.encode_unimodal(emb, masks)
        logits = self.fuse_and_classify(hidden, masks)
        losses = {}
        if self.training:
            losses["task"] = self.task_loss(logits, batch.labels)
            if self.cfg.atm:
                losses["mask"] = self.task_loss(self._masked_logits(x, emb, hidden, masks, batch), batch.labels)
        return ModelOutput(torch.sigmoid(logits), losses)

    # ------------------------------------------------------------------------------------------ ATM

    def mask_indicator(self, hidden: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """A^m [B, L_m] in [0, 1]: soft indicator of the units to mask (sum = round(mask_ratio * real units))."""
        cfg = self.cfg
        names = list(hidden)
        length = max(h.shape[1] for h in hidden.values())
        valid = torch.stack([F.pad(masks[m], (0, length - masks[m].shape[1])) for m in names])  # [M, B, L]
        n = valid.sum(-1)  # [M, B]
        k = torch.floor(cfg.mask_ratio * n + 0.5).long()  # [M, B] steps to mask per (modality, sample)
        if cfg.mask_source == "random":
            noise = torch.rand(valid.shape, device=valid.device).masked_fill(~valid, -1.0)  # [M, B, L]
            rank = noise.argsort(-1, descending=True).argsort(-1)  # [M, B, L]
            chosen = (rank < k.unsqueeze(-1)) & valid  # [M, B, L]
            return {m: chosen[i, :, : hidden[m].shape[1]].to(hidden[m].dtype) for i, m in enumerate(names)}
        scores = []
        for m in names:
            h = hidden[m] if cfg.reverse_into_encoders else hidden[m].detach()
            z = self.scorers[m](h).squeeze(-1)  # [B, L_m]
            if cfg.scorer_bias == "position":
                z = z + self.scorer_bias[m][: z.shape[1]]
            scores.append(F.pad(torch.sigmoid(z), (0, length - z.shape[1])))
        lam = cfg.grl_lambda if cfg.gradient_reversal else -cfg.grl_lambda
        s = grad_reverse(torch.stack(scores), lam)  # [M, B, L]
        a = soft_topk(s, k, valid, epsilon=cfg.sinkhorn_epsilon, max_iter=cfg.sinkhorn_iters, gradient=cfg.topk_gradient)  # [M, B, L]
        return {m: a[i, :, : hidden[m].shape[1]] for i, m in enumerate(names)}

    def _masked_logits(self, x: dict[str, Tensor], emb: dict[str, Tensor], hidden: dict[str, Tensor], masks: dict[str, Tensor], batch: Batch) -> Tensor:
        """Logits of the masked pass through the same encoders and decoder."""
        keep = {m: 1.0 - a.unsqueeze(-1) for m, a in self.mask_indicator(hidden, masks).items()}  # [B, L_m, 1]
        if self.cfg.mask_at == "embedding":
            masked_emb = {m: keep[m] * emb[m] for m in emb}
        else:
            masked_emb = self.embed_inputs({m: keep[m] * v for m, v in x.items()}, batch)
        return self.fuse_and_classify(self.encode_unimodal(masked_emb, masks), masks)

    # -------------------------------------------------------------------------------- training step

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """Algorithm 1 with three backward passes; the engine clips and steps afterwards."""
        cfg = self.cfg
        if cfg.input_perturbation != "none":
            return self._input_perturbation_step(batch, ctx)
        x, masks = self._inputs(batch)
        labels = batch.labels
        before = [None if p.grad is None else p.grad.clone() for p in self._app_targets] if cfg.app else []

        # Clean pass, cut into segments emb -> H (uni-modal) -> logits (E^m, D): leaves `emb_in` and `hid_in`
        # collect the gradients of every later pass that reads them; `flush` pushes them through the uni-modal
        # encoders and the projections in one backward.
        emb = self.embed_inputs(x, batch)
        emb_in = {m: e.detach().requires_grad_() for m, e in emb.items()}
        hidden = self.encode_unimodal(emb_in, masks)
        hid_in = {m: h.detach().requires_grad_() for m, h in hidden.items()}
        logits = self.fuse_and_classify(hid_in, masks)
        losses = {"task": self.task_loss(logits, labels)}
        ctx.check_finite(losses)
        ctx.backward(losses["task"])

        def flush(retain: bool) -> None:
            # These gradients already came out of ctx.backward (loss-scaled under mixed precision), so they are
            # propagated with plain autograd: passing them through ctx.backward would scale them twice.
            for outputs, leaves in ((hidden, hid_in), (emb, emb_in)):
                pairs = [(outputs[m], leaves[m].grad) for m in leaves if leaves[m].grad is not None]
                if pairs:
                    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs], retain_graph=retain)
                for leaf in leaves.values():
                    leaf.grad = None

        uses_graph = cfg.atm and ((cfg.mask_source == "adversarial" and cfg.reverse_into_encoders) or cfg.mask_at == "embedding")
        perturb_unimodal = cfg.app and "unimodal" in cfg.app_scope
        if perturb_unimodal:  # the uni-modal gradient of L_r is part of the direction: propagate it now
            flush(retain=uses_graph)
        direction = None
        if cfg.app and cfg.app_noise == "gradient" and cfg.app_direction == "clean":
            direction = self._grad_since(before)

        masked_done = False
        if cfg.atm and (uses_graph or (cfg.app and cfg.app_direction == "accumulated")):
            losses["mask"] = self._masked_backward(x, emb_in, hid_in, masks, batch, ctx)
            masked_done = True
        if cfg.app:
            if direction is None:
                direction = self._grad_since(before) if cfg.app_noise == "gradient" else [torch.randn_like(p) for p in self._app_targets]
            with perturbed_parameters(self._app_targets, direction, cfg.gamma, cfg.app_norm):
                if perturb_unimodal:  # every module from the input on may be perturbed: recompute the whole pass
                    noisy = self.fuse_and_classify(self.encode_unimodal(self.embed_inputs(x, batch), masks), masks)
                else:  # Algorithm 1 line 15: unperturbed uni-modal outputs into the perturbed E^m
                    noisy = self.fuse_and_classify(hid_in, masks)
                losses["app"] = consistency_kl(logits, noisy, cfg.app_kl)
                ctx.check_finite({"app": losses["app"]})
                ctx.backward(cfg.sigma * losses["app"])
        flush(retain=False)
        if cfg.atm and not masked_done:
            losses["mask"] = self._masked_backward(x, emb_in, hid_in, masks, batch, ctx)
        total = losses["task"] + cfg.rho * losses.get("mask", 0.0) + cfg.sigma * losses.get("app", 0.0)
        return ctx.logged(losses, total)

    def _grad_since(self, before: list[Tensor | None]) -> list[Tensor]:
        """Gradient accumulated on the APP targets during this step."""
        out = []
        for p, b in zip(self._app_targets, before):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            out.append(g.clone() if b is None else g - b)
        return out

    def _masked_backward(self, x: dict[str, Tensor], emb_in: dict[str, Tensor], hid_in: dict[str, Tensor], masks: dict[str, Tensor], batch: Batch, ctx: StepContext) -> Tensor:
        loss = self.task_loss(self._masked_logits(x, emb_in, hid_in, masks, batch), batch.labels)
        ctx.check_finite({"mask": loss})
        ctx.backward(self.cfg.rho * loss)
        return loss

    def _input_perturbation_step(self, batch: Batch, ctx: StepContext) -> dict[str, float]:
        """Table 2's last rows: FGSM / PGD on the input embeddings (clean + adversarial loss), or random erasing /
        Gaussian noise on the raw features (the augmented batch replaces the clean one)."""
        cfg = self.cfg
        x, masks = self._inputs(batch)
        if cfg.input_perturbation in ("erasing", "gaussian"):
            augment = random_erasing if cfg.input_perturbation == "erasing" else lambda v, k: gaussian_noise(v, k, cfg.noise_std)
            x = {m: augment(v, masks[m]) for m, v in x.items()}
            out = self.fuse_and_classify(self.encode_unimodal(self.embed_inputs(x, batch), masks), masks)
            losses = {"task": self.task_loss(out, batch.labels)}
            ctx.check_finite(losses)
            ctx.backward(losses["task"])
            return ctx.logged(losses, losses["task"])

        def loss_from(embedded: dict[str, Tensor]) -> Tensor:
            return self.task_loss(self.fuse_and_classify(self.encode_unimodal(embedded, masks), masks), batch.labels)

        emb = self.embed_inputs(x, batch)
        emb_in = {m: e.detach().requires_grad_() for m, e in emb.items()}
        losses = {"task": loss_from(emb_in)}
        ctx.check_finite(losses)
        ctx.backward(losses["task"])
        eps = cfg.input_epsilon
        if cfg.input_perturbation == "fgsm":
            delta = {m: fgsm_step(emb_in[m].grad, eps) for m in emb_in}
        else:
            delta = {m: torch.empty_like(e).uniform_(-eps, eps) for m, e in emb.items()}
            for _ in range(cfg.pgd_steps):
                probe = {m: delta[m].requires_grad_() for m in delta}
                grads = torch.autograd.grad(loss_from({m: emb[m].detach() + probe[m] for m in emb}), list(probe.values()))
                delta = {m: pgd_update(probe[m].detach(), g, 2.5 * eps / cfg.pgd_steps, eps) for m, g in zip(probe, grads)}
        losses["adv"] = loss_from({m: emb_in[m] + delta[m] for m in emb_in})
        ctx.check_finite({"adv": losses["adv"]})
        ctx.backward(losses["adv"])
        torch.autograd.backward([emb[m] for m in emb], [emb_in[m].grad for m in emb])  # already loss-scaled
        return ctx.logged(losses, losses["task"] + losses["adv"])
