"""The translator: M learned queries that read LM A's last hidden states and become M soft
tokens in LM B's embedding space (docs/studies.md, the bridge section).

Each block: self-attention among the queries, tanh-gated cross-attention to A's states
(padding-masked; gate initialised at 0, so at initialisation A contributes nothing and training
opens the gate — Flamingo's recipe), FFN; all pre-LN with residuals. The output Linear maps to
d_B and each soft token is rescaled to the RMS of B's token embeddings, so B sees inputs on the
scale it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln_self = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.ln_cross = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(1))
        self.ln_ffn = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_is_pad: torch.Tensor) -> torch.Tensor:
        h = self.ln_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.ln_cross(x)
        cross = self.cross_attn(h, memory, memory, key_padding_mask=memory_is_pad, need_weights=False)[0]
        x = x + torch.tanh(self.gate) * cross
        return x + self.ffn(self.ln_ffn(x))


class Translator(nn.Module):
    """A's states (B, T_a, d_a) + padding mask (True = real) → soft tokens (B, n_queries, d_b),
    each with RMS `target_rms` (set it to B's `embedding_rms()`)."""

    def __init__(
        self,
        d_a: int,
        d_b: int,
        n_queries: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        target_rms: float = 1.0,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) * 0.02)
        self.ln_in = nn.LayerNorm(d_a)
        self.proj_in = nn.Linear(d_a, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.proj_out = nn.Linear(d_model, d_b)
        self.register_buffer("target_rms", torch.tensor(float(target_rms)))

    def forward(self, a_states: torch.Tensor, a_mask: torch.Tensor) -> torch.Tensor:
        a_mask = a_mask.bool()
        if not bool(a_mask.any(1).all()):
            raise ValueError("Translator: every row of a_mask needs at least one real token")
        memory = self.proj_in(self.ln_in(a_states))
        x = self.queries.expand(a_states.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, memory, ~a_mask)
        y = self.proj_out(self.ln_out(x))
        return y * (self.target_rms / y.pow(2).mean(-1, keepdim=True).add(1e-8).sqrt())
