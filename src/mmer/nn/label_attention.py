"""Label-wise attention (CARAT Eq. 1; RAMer's X_alpha, ramer ref §2.3): one attention distribution per label.

For modality m with hidden states H [B, L, d] and the learned label queries U_m in R^{C x d}:

    e[b, j, i] = <U_j, H[b, i]>          (plain dot product: no bias, no tanh, no scaling, as in the code)
    a[b, j, :] = softmax_i(e[b, j, :]) over the real positions only
    o[b, j]    = sum_i a[b, j, i] H[b, i]                      -> o [B, C, d]

Deviation from the official code (documented in docs/nn.md): a sample with no real token (missing modality) gets
o = 0 and zero attention weights; the official masked softmax would return NaN there (the official loaders never
mask anything, so it never showed).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmer.nn.masking import check_mask, masked_softmax


class LabelWiseAttention(nn.Module):
    """H [B, L, d], mask bool [B, L] -> label-specific representations o [B, C, d]."""

    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.queries = nn.Linear(hidden_size, num_labels, bias=False)  # U_m, weight [C, d]
        nn.init.xavier_uniform_(self.queries.weight)

    def weights(self, hidden: Tensor, mask: Tensor, bias: Tensor | None = None) -> Tensor:
        """Attention weights a [B, C, L]: zero at padding; all zero for a sample with no real token.

        `bias` (optional, broadcastable to [B, C, L]) is added to the scores before the softmax, e.g. a learned
        per-label preference for some positions (RAMer's target roles).
        """
        check_mask(mask, hidden)
        scores = self.queries(hidden).transpose(1, 2)  # [B, C, L]
        if bias is not None:
            scores = scores + bias
        return masked_softmax(scores, mask.unsqueeze(1), dim=-1)

    def forward(self, hidden: Tensor, mask: Tensor, bias: Tensor | None = None) -> Tensor:
        return self.weights(hidden, mask, bias) @ hidden  # [B, C, d]
