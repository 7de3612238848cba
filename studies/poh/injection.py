"""Feature injection: feed the controller feature r back into the tokens.

A routing-only PoH model (mode ``none``) uses the controller only to weight heads; these
modes also write r [B, d_ctrl] into the token stream x [B, S, D] before the layers (the
ablation of Eran-BA/PoT's feature_injection.py). r is one vector per sequence, broadcast
over cells:

- ``broadcast``   x + σ(w_gᵀr) · LN(W r)
- ``film``        [γ, β] = W₂ GELU(W₁ r),  x' = γ ⊙ x + β.  W₂'s weight is 0 and its bias
                  (1, 0), so the mode is exactly the identity at initialisation.
- ``depth_token`` prepend LN(W r) as token 0; the caller drops it after the layers
                  (``strip``), so the output length is unchanged.
- ``cross_attn``  FIFO memory M of the last ``memory_size`` projected r (W r), one appended
                  per call; x' = LN(x + MHA(x, M, M)) with ``memory_heads`` heads.
- ``alpha_gated`` x + g · LN(W r), g = agg(α) · σ(w_gᵀr) (``use_learned_gate``) or agg(α).
                  agg: ``mean`` | ``max`` | ``entropy``. Note: the mean of a softmax over H
                  heads is the constant 1/H, so ``mean`` is a fixed-scale broadcast (with the
                  learned gate: ``broadcast`` scaled by 1/H); report that cell as such.
                  ``entropy`` = 1 − H(α)/ln H ∈ [0, 1] (``entropy_norm: log``); the source
                  divided by H instead (``entropy_norm: n_heads``), which confines the gate
                  to [1 − ln H / H, 1] = [0.740, 1] at 8 heads.

Differences from the source: ``broadcast`` and ``alpha_gated`` apply LN to W r (the stored
source code adds raw W r; its quoted parameter counts include a LayerNorm for those modes).
"""

import math

import torch
from torch import Tensor, nn

from studies.poh.controller import routing_entropy

INJECTION_MODES = ("none", "broadcast", "film", "depth_token", "cross_attn", "alpha_gated")
ALPHA_AGGS = ("mean", "max", "entropy")
ENTROPY_NORMS = ("log", "n_heads")


def alpha_gate(alpha: Tensor, agg: str, entropy_norm: str = "log") -> Tensor:
    """Aggregate α [B, H] to one gate per sequence, [B, 1]."""
    if agg == "mean":
        return alpha.mean(-1, keepdim=True)  # always 1/H for a softmax
    if agg == "max":
        return alpha.amax(-1, keepdim=True)
    if agg == "entropy":
        H = alpha.shape[-1]
        if entropy_norm not in ENTROPY_NORMS:
            raise ValueError(f"entropy_norm={entropy_norm!r} is not one of {ENTROPY_NORMS}")
        scale = math.log(H) if entropy_norm == "log" else float(H)
        return 1.0 - routing_entropy(alpha).unsqueeze(-1) / scale
    raise ValueError(f"alpha_agg={agg!r} is not one of {ALPHA_AGGS}")


class NoInjection(nn.Module):
    adds_token = False

    def forward(self, x, r, alpha, memory):
        return x, memory


class BroadcastInjection(nn.Module):
    adds_token = False

    def __init__(self, d_model: int, d_ctrl: int):
        super().__init__()
        self.proj, self.ln, self.gate = nn.Linear(d_ctrl, d_model), nn.LayerNorm(d_model), nn.Linear(d_ctrl, 1)

    def forward(self, x, r, alpha, memory):
        g = torch.sigmoid(self.gate(r))  # [B, 1]
        return x + (g * self.ln(self.proj(r))).unsqueeze(1), memory  # [B, 1, D] over cells


class FiLMInjection(nn.Module):
    adds_token = False

    def __init__(self, d_model: int, d_ctrl: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d_ctrl, d_ctrl), nn.GELU(), nn.Linear(d_ctrl, 2 * d_model)
        nn.init.zeros_(self.fc2.weight)
        with torch.no_grad():  # bias = (γ = 1, β = 0): identity at init
            self.fc2.bias.zero_()
            self.fc2.bias[:d_model].fill_(1.0)

    def forward(self, x, r, alpha, memory):
        gamma, beta = self.fc2(self.act(self.fc1(r))).unsqueeze(1).chunk(2, -1)  # [B, 1, D] each
        return gamma * x + beta, memory


class DepthTokenInjection(nn.Module):
    adds_token = True

    def __init__(self, d_model: int, d_ctrl: int):
        super().__init__()
        self.proj, self.ln = nn.Linear(d_ctrl, d_model), nn.LayerNorm(d_model)

    def forward(self, x, r, alpha, memory):
        tok = self.ln(self.proj(r)).unsqueeze(1)  # [B, 1, D]
        return torch.cat([tok, x], 1), memory  # [B, S+1, D]


class CrossAttnInjection(nn.Module):
    adds_token = False

    def __init__(self, d_model: int, d_ctrl: int, memory_size: int = 16, memory_heads: int = 4):
        super().__init__()
        if memory_size < 1:
            raise ValueError(f"memory_size={memory_size} must be >= 1")
        self.memory_size = memory_size
        self.proj = nn.Linear(d_ctrl, d_model)
        self.attn = nn.MultiheadAttention(d_model, memory_heads, batch_first=True)
        self.ln = nn.LayerNorm(d_model)

    def forward(self, x, r, alpha, memory):
        new = self.proj(r).unsqueeze(1)  # [B, 1, D]
        memory = new if memory is None else torch.cat([memory, new], 1)[:, -self.memory_size :]
        out, _ = self.attn(x, memory, memory, need_weights=False)  # [B, S, D]; memory [B, ≤M, D]
        return self.ln(x + out), memory


class AlphaGatedInjection(nn.Module):
    adds_token = False

    def __init__(
        self,
        d_model: int,
        d_ctrl: int,
        alpha_agg: str = "mean",
        use_learned_gate: bool = True,
        entropy_norm: str = "log",
    ):
        super().__init__()
        if alpha_agg not in ALPHA_AGGS:
            raise ValueError(f"alpha_agg={alpha_agg!r} is not one of {ALPHA_AGGS}")
        if entropy_norm not in ENTROPY_NORMS:
            raise ValueError(f"entropy_norm={entropy_norm!r} is not one of {ENTROPY_NORMS}")
        self.alpha_agg, self.entropy_norm = alpha_agg, entropy_norm
        self.proj, self.ln = nn.Linear(d_ctrl, d_model), nn.LayerNorm(d_model)
        self.gate = nn.Linear(d_ctrl, 1) if use_learned_gate else None

    def forward(self, x, r, alpha, memory):
        g = alpha_gate(alpha, self.alpha_agg, self.entropy_norm)  # [B, 1]
        if self.gate is not None:
            g = g * torch.sigmoid(self.gate(r))
        return x + (g * self.ln(self.proj(r))).unsqueeze(1), memory


def make_injection(
    mode: str,
    d_model: int,
    d_ctrl: int,
    memory_size: int = 16,
    memory_heads: int = 4,
    alpha_agg: str = "mean",
    use_learned_gate: bool = True,
    entropy_norm: str = "log",
) -> nn.Module:
    """Every returned module maps (x [B,S,D], r [B,dc], α [B,H], memory) → (x', memory')."""
    if mode == "none":
        return NoInjection()
    if mode == "broadcast":
        return BroadcastInjection(d_model, d_ctrl)
    if mode == "film":
        return FiLMInjection(d_model, d_ctrl)
    if mode == "depth_token":
        return DepthTokenInjection(d_model, d_ctrl)
    if mode == "cross_attn":
        return CrossAttnInjection(d_model, d_ctrl, memory_size, memory_heads)
    if mode == "alpha_gated":
        return AlphaGatedInjection(d_model, d_ctrl, alpha_agg, use_learned_gate, entropy_norm)
    raise ValueError(f"injection={mode!r} is not one of {INJECTION_MODES}")
