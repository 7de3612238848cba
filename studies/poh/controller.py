"""Two-timescale pointer controller: routing weights α over attention heads.

The PoH controller (Eran-BA/PoT, after HRM's fast/slow recurrence) reads a summary of the
sequence and emits one softmax over heads per sequence; a standard transformer has no such
module (every head has weight 1). Per call:

    x̄ = mean over cells of x                     [B, D]
    p = W_in x̄                                     [B, d_ctrl]
    if t % T == 0:  h ← LN(GRU_h(p, h))            slow state, every T calls
    l ← LN(GRU_l([p; h], l))                       fast state, every call
    r = l + W_mix h                                controller feature (used by injection)
    α = softmax(W_r r / τ)                         optional top-k: keep k largest, renormalise

State (h, l, t) starts at zero at the start of each model forward and is passed in and out
explicitly, so it persists across every call within that forward and never across forwards
(the source's maze router kept it on the module, leaking it between batches).

Differences from the source controller: τ is a fixed float (the source stored log τ as a
frozen nn.Parameter, which added 1 to its parameter count), and the returned routing entropy
is per sequence and differentiable (the source returned a detached batch mean, so its entropy
regulariser had no gradient).
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ControllerState:
    h: Tensor  # [B, d_ctrl] slow state
    l: Tensor  # noqa: E741  [B, d_ctrl] fast state
    t: int  # calls made so far in this forward (shared by the batch)


class ControllerOutput(NamedTuple):
    alpha: Tensor  # [B, H] routing weights, rows sum to 1
    r: Tensor  # [B, d_ctrl] controller feature
    state: ControllerState
    entropy: Tensor  # [B] routing entropy H(α) in nats, differentiable


def routing_entropy(alpha: Tensor) -> Tensor:
    """H(α) = -Σ_k α_k ln α_k over the last dim; zeros (top-k) contribute 0."""
    return -(alpha * alpha.clamp_min(1e-12).log()).sum(-1)


def keep_topk(alpha: Tensor, k: int) -> Tensor:
    """Zero all but the k largest weights per row, then renormalise to sum 1."""
    idx = alpha.topk(k, dim=-1).indices  # [B, k]
    mask = torch.zeros_like(alpha).scatter_(-1, idx, 1.0)
    kept = alpha * mask
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)


class PointerController(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ctrl: int | None = None,
        T: int = 4,
        temperature: float = 1.0,
        topk: int | None = None,
    ):
        super().__init__()
        if T < 1:
            raise ValueError(f"T={T} must be >= 1")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        if topk is not None and not 1 <= topk <= n_heads:
            raise ValueError(f"topk={topk} must be None or in 1..n_heads={n_heads}")
        self.d_ctrl = d_ctrl or d_model
        self.n_heads, self.T, self.temperature, self.topk = n_heads, T, temperature, topk
        dc = self.d_ctrl
        self.w_in = nn.Linear(d_model, dc)
        self.gru_h = nn.GRUCell(dc, dc)  # slow
        self.gru_l = nn.GRUCell(2 * dc, dc)  # fast, reads [p; h]
        self.ln_h, self.ln_l = nn.LayerNorm(dc), nn.LayerNorm(dc)
        self.w_mix = nn.Linear(dc, dc, bias=False)
        self.w_r = nn.Linear(dc, n_heads)

    def init_state(self, batch: int, like: Tensor) -> ControllerState:
        z = torch.zeros(batch, self.d_ctrl, dtype=like.dtype, device=like.device)
        return ControllerState(h=z, l=z, t=0)

    def forward(self, x: Tensor, state: ControllerState | None = None) -> ControllerOutput:
        # x: [B, S, D] tokens (or an already pooled [B, D])
        if state is None:
            state = self.init_state(x.shape[0], x)
        p = self.w_in(x.mean(1) if x.dim() == 3 else x)  # [B, d_ctrl]
        h = self.ln_h(self.gru_h(p, state.h)) if state.t % self.T == 0 else state.h
        l = self.ln_l(self.gru_l(torch.cat([p, h], -1), state.l))  # noqa: E741  [B, d_ctrl]
        r = l + self.w_mix(h)  # [B, d_ctrl]
        alpha = F.softmax(self.w_r(r) / self.temperature, dim=-1)  # [B, H]
        if self.topk is not None and self.topk < self.n_heads:
            alpha = keep_topk(alpha, self.topk)
        new_state = ControllerState(h=h, l=l, t=state.t + 1)
        return ControllerOutput(alpha, r, new_state, routing_entropy(alpha))
