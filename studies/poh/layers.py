"""Pointer-over-heads (PoH) attention and the post-norm block built on it.

PoH (Ben Artzy, "Pointer-over-Heads", Eran-BA/PoT) lets a controller weight the attention
heads: head k's output is multiplied by H·α_k, where α is a softmax over the H heads, so a
uniform α reproduces plain multi-head attention exactly. The only difference from a standard
post-norm transformer block is that scaling; with ``alpha=None`` the block *is* the standard
block, which is how the baselines use it.

``routing_point``:
- ``pre_proj`` (default, what the PoH paper describes): scale each head's output before the
  shared output projection mixes the heads.
- ``post_proj`` (the source code's behaviour): project first, then scale the H equal slices
  of the projected vector. After the projection a slice no longer belongs to one head, so
  this is a per-channel-group gain, not head routing; kept as a named option to reproduce it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROUTING_POINTS = ("pre_proj", "post_proj")
NORMS = ("rms", "layer")
FFNS = ("swiglu", "gelu")


class SwiGLU(nn.Module):
    """SwiGLU feed-forward without biases (HRM's FFN): W_down(SiLU(W_gate x) ⊙ W_up x)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, S, D]
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class GeluMLP(nn.Module):
    """The standard encoder FFN, with biases: W_2 GELU(W_1 x)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, S, D]
        return self.fc2(F.gelu(self.fc1(x)))


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "rms":
        return nn.RMSNorm(d_model, eps=1e-6)
    if kind == "layer":
        return nn.LayerNorm(d_model)
    raise ValueError(f"norm={kind!r} is not one of {NORMS}")


def make_ffn(kind: str, d_model: int, d_ff: int) -> nn.Module:
    if kind == "swiglu":
        return SwiGLU(d_model, d_ff)
    if kind == "gelu":
        return GeluMLP(d_model, d_ff)
    raise ValueError(f"ffn={kind!r} is not one of {FFNS}")


class PoHAttention(nn.Module):
    """Multi-head self-attention whose heads are weighted by α [B, H] (None = unweighted).

    Same parameters as ``nn.MultiheadAttention`` (4·D² + 4·D), so counts are comparable."""

    def __init__(self, d_model: int, n_heads: int, routing_point: str = "pre_proj"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        if routing_point not in ROUTING_POINTS:
            raise ValueError(f"routing_point={routing_point!r} is not one of {ROUTING_POINTS}")
        self.n_heads, self.routing_point = n_heads, routing_point
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, alpha: Tensor | None = None) -> Tensor:
        B, S, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).view(B, S, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 × [B, H, S, dh]
        o = F.scaled_dot_product_attention(q, k, v)  # [B, H, S, dh]
        if alpha is None:
            return self.out(o.transpose(1, 2).reshape(B, S, D))
        gain = H * alpha  # [B, H]; uniform α gives gain 1 per head
        if self.routing_point == "pre_proj":
            o = o * gain[:, :, None, None]  # head k scaled before the heads are mixed
            return self.out(o.transpose(1, 2).reshape(B, S, D))
        y = self.out(o.transpose(1, 2).reshape(B, S, D)).view(B, S, H, D // H)
        return (y * gain[:, None, :, None]).reshape(B, S, D)  # source: scale projected slices


class PoHBlock(nn.Module):
    """Post-norm block: x ← N1(x + Attn(x; α)); x ← N2(x + FFN(x))."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        norm: str = "rms",
        ffn: str = "swiglu",
        routing_point: str = "pre_proj",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.attn = PoHAttention(d_model, n_heads, routing_point)
        self.ffn = make_ffn(ffn, d_model, d_ff)
        self.norm1, self.norm2 = make_norm(norm, d_model), make_norm(norm, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, alpha: Tensor | None = None) -> Tensor:  # x: [B, S, D]
        x = self.norm1(x + self.drop(self.attn(x, alpha)))
        return self.norm2(x + self.drop(self.ffn(x)))


def uniform_alpha(batch: int, n_heads: int, like: Tensor) -> Tensor:
    """α = 1/H for every head: PoH attention then equals plain attention."""
    return torch.full((batch, n_heads), 1.0 / n_heads, dtype=like.dtype, device=like.device)
