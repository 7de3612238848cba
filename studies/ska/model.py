"""Causal LM whose token attention is banked set kernel attention (SKA), and its SDPA twin.

SKA (set-attention, iarroyof/set-attention, redone causally): each sequence is cut into
window sets of distinct token ids (``banks.py``). Sets attend to sets with MinHash Δ-RBF or
intersection scores plus an optional content dot product (``kernels``), so the score matrix
is sets × sets, not tokens × tokens; each token then reads set outputs through a router.

Both models: learned token and position embeddings, pre-LN residual blocks, final LayerNorm
and an LM head TIED to the token embedding. They differ only in the token-mixing part:

    sdpa block:  [x += CausalConv(LN x)];  x += CausalSelfAttention(LN x);  x += MLP(LN x)
    ska  block:  [x += CausalConv(LN x)];  x += SKA(LN x, bank);            x += MLP(LN x)
    none block:  [x += CausalConv(LN x)];                                    x += MLP(LN x)

``mixer`` (as in ``vit.py``): ``auto`` puts the causal conv in SKA and ``none`` blocks only
(the SDPA baseline is a standard transformer); ``conv`` / ``none`` force it for every block,
so SDPA+conv separates the conv's locality prior from set attention. ``attention="none"``
(conv and MLP only) is the model SKA becomes with every set branch shut: a trained control
for what the local mixer alone can do. ``d_ff`` widens the MLP, e.g. to match parameters.

Causality (the source's LM leaked the next token; this one must not). Token t reads only
sets whose window ends at or before t (set_end <= t + 1); set-to-set attention is causal on
window end (end_k <= end_q). The tokens of the still-unfinished window are covered by the
local mixer: a causal DEPTHWISE CONVOLUTION of width ``window`` (output t sees t-w+1 .. t).

Set features: one atom table E (V × D), separate from the token embedding and shared by all
SKA layers; each layer owns its adapter E' = E + α·W2(W1 E) (rank r, α init 0.1), pools
Φ(S) = mean_{x in S} E'[x] afresh every forward, and Φ^ = Φ/‖Φ‖ feeds A, B and W_V.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .banks import Bank, PaddedBank
from .kernels import BACKENDS, SCORE_MODES, check_precision, set_attend

ATTENTIONS = ("ska", "sdpa", "none")
MIXERS = ("auto", "conv", "none")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"LMConfig.{message}")


@dataclass
class LMConfig:
    vocab_size: int = 256
    seq_len: int = 128  # longest input; size of the position table
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4  # sdpa heads; SKA weights are shared by all heads, so it has no split
    d_ff: int | None = None  # None: 4 · d_model
    dropout: float = 0.0
    attention: str = "ska"  # ska | sdpa | none (local mixer and MLP only)
    window: int = 32  # tokens per set; also the causal conv width
    stride: int = 16
    minhash_k: int = 64
    router_topk: int = 0  # 0 or >= n_sets: dense
    adapter_rank: int = 0  # 0: no atom adapter
    score_mode: str = "delta_plus_dot"
    gamma: float = 0.3
    beta: float | None = None  # None: 1 / d_model
    tau: float = 1.0
    eta: float = 1.0
    backend: str = "python"
    gate_init: float = -3.0  # ρ at init: the SKA branch enters as σ(ρ)·out (the source: -3, σ ≈ 0.05)
    precision: str = "fp32"  # SKA kernel: qc, kc, v and Z in fp32 | fp16 | bf16 (fp32 accumulation)
    mixer: str = "auto"  # auto (conv for ska and none, absent for sdpa) | conv | none

    def __post_init__(self):
        positive = ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "window")
        for name in (*positive, "stride", "minhash_k", "router_topk", "adapter_rank"):
            value, low = (
                getattr(self, name),
                1 if name in positive + ("stride", "minhash_k") else 0,
            )
            _check(isinstance(value, int) and value >= low, f"{name}={value!r}: need int >= {low}")
        choices = {"attention": ATTENTIONS, "score_mode": SCORE_MODES, "mixer": MIXERS}
        for name, allowed in {**choices, "backend": tuple(sorted(BACKENDS))}.items():
            value = getattr(self, name)
            _check(value in allowed, f"{name}={value!r}; allowed: {', '.join(allowed)}")
        _check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} % n_heads != 0")
        # sets exist only under SKA; the other variants' params leave stride at its default
        sets_ok = self.attention != "ska" or self.stride <= self.window
        _check(sets_ok, f"stride={self.stride} > window: gaps in the sets")
        _check(self.d_ff is None or self.d_ff >= 1, f"d_ff={self.d_ff!r}: need None or >= 1")
        _check(0.0 <= self.dropout < 1.0, f"dropout={self.dropout}: need [0, 1)")
        _check(self.tau > 0 and self.gamma >= 0, f"tau={self.tau}, gamma={self.gamma}")
        _check(self.beta is None or self.beta >= 0, f"beta={self.beta}: need None or >= 0")
        try:
            check_precision(self.backend, self.precision)
        except ValueError as err:
            raise ValueError(f"LMConfig.precision={self.precision!r}: {err}") from None

    @property
    def beta_value(self) -> float:
        return 1.0 / self.d_model if self.beta is None else float(self.beta)

    @property
    def local_mixer(self) -> str:
        if self.mixer == "auto":
            return "none" if self.attention == "sdpa" else "conv"
        return self.mixer

    @property
    def ff_width(self) -> int:
        return 4 * self.d_model if self.d_ff is None else self.d_ff


class MLP(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ff_width)
        self.down = nn.Linear(cfg.ff_width, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, D]
        return self.drop(self.down(F.gelu(self.up(x))))


class CausalSelfAttention(nn.Module):
    """Multi-head SDPA; ``causal=False`` (ViT, denoisers) lets every token see every token."""

    def __init__(self, cfg: LMConfig, causal: bool = True):
        super().__init__()
        self.h, self.p, self.causal = cfg.n_heads, cfg.dropout, causal
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, D]
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.h, D // self.h)  # [B, L, 3, H, Dh]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, L, Dh]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=self.p if self.training else 0.0)
        return self.drop(self.out(y.transpose(1, 2).reshape(B, L, D)))


class CausalConv(nn.Module):
    """Depthwise conv of width w, left-padded: output t sees inputs t-w+1 .. t only.

    Zero-initialized, so the residual branch starts as the identity. PyTorch's default init
    sums w layer-normed past tokens into a signal ~50x louder than the token's own 0.02-std
    embedding; the model then cannot tell which token it is at and stalls at unigram loss.
    """

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.w = cfg.window
        self.conv = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.window, groups=cfg.d_model)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, D]
        y = self.conv(F.pad(x.transpose(1, 2), (self.w - 1, 0)))  # [B, D, L]
        return y.transpose(1, 2)


class SetKernelAttention(nn.Module):
    """Sets attend to sets (kernel), then tokens read set outputs through a router.

    ``causal=False`` (images, denoisers): every set attends to every set and every token may
    read every set; the LM keeps the default ``causal=True``.
    """

    def __init__(self, cfg: LMConfig, causal: bool = True):
        super().__init__()
        D, r = cfg.d_model, cfg.adapter_rank
        self.cfg, self.causal = cfg, causal
        # content term beta·(A Φ^)·(B Φ^): absent (no A, B, no matmul) when beta == 0
        has_dot = cfg.score_mode in ("delta_plus_dot", "intersect_plus_dot", "dot")
        self.content = has_dot and cfg.beta_value != 0
        if r > 0:
            self.w1, self.w2 = nn.Linear(D, r, bias=False), nn.Linear(r, D, bias=False)
            self.alpha = nn.Parameter(torch.tensor(0.1))
        if self.content:
            self.a, self.b = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.w_v = nn.Linear(D, D, bias=False)
        self.w_g, self.w_d = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.w_o = nn.Linear(D, D, bias=False)
        self.rho = nn.Parameter(torch.tensor(float(cfg.gate_init)))
        self.drop = nn.Dropout(cfg.dropout)

    def set_features(self, e: Tensor, pb: PaddedBank) -> Tensor:
        """Φ [B, S, D]: mean of adapted atom embeddings e [B, S, W, D] over each set."""
        if self.cfg.adapter_rank > 0:
            e = e + self.alpha * self.w2(self.w1(e))  # E' = E + α W2 W1 E, row by row
        total = (e * pb.atom_mask[..., None]).sum(-2)  # [B, S, D]
        return total / pb.size.clamp(min=1.0)[..., None]

    def forward(self, x: Tensor, e: Tensor, pb: PaddedBank) -> Tensor:  # x [B, L, D] -> [B, L, D]
        c = self.cfg
        phi = self.set_features(e, pb)  # [B, S, D]
        phi_hat = F.normalize(phi, dim=-1, eps=1e-6)  # padding sets: 0
        qc, kc = (self.a(phi_hat), self.b(phi_hat)) if self.content else (None, None)
        z = set_attend(
            pb.sig,
            pb.size,
            pb.end,
            pb.valid,
            qc,
            kc,
            self.w_v(phi_hat),
            gamma=c.gamma,
            beta=c.beta_value,
            tau=c.tau,
            eta=c.eta,
            score_mode=c.score_mode,
            causal=self.causal,
            backend=c.backend,
            precision=c.precision,
        ).to(x.dtype)  # [B, S, D]; back from the kernel's precision
        # router over the sets token t may read: causal, window finished (set_end <= t + 1)
        B, L, S = x.shape[0], x.shape[1], pb.valid.shape[1]
        readable = pb.valid[:, None, :].expand(B, L, S)  # [B, L, S]
        if self.causal:
            t1 = torch.arange(1, L + 1, device=x.device)[None, :, None]  # [1, L, 1]
            readable = readable & (pb.end[:, None, :] <= t1)
        logits = self.w_g(x) @ self.w_d(phi).transpose(1, 2)  # [B, L, S]
        logits = logits.masked_fill(~readable, float("-inf"))
        if 0 < c.router_topk < S:
            top = logits.topk(c.router_topk, dim=-1).indices  # [B, L, K]
            keep = torch.zeros_like(readable).scatter_(-1, top, True)
            readable = readable & keep
            logits = logits.masked_fill(~readable, float("-inf"))
        has_set = readable.any(-1, keepdim=True)  # [B, L, 1]
        g = torch.softmax(torch.where(has_set, logits, torch.zeros_like(logits)), -1) * readable
        return self.drop(torch.sigmoid(self.rho) * self.w_o(g @ z))  # [B, L, D]


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        D = cfg.d_model
        self.attention, self.has_mix = cfg.attention, cfg.local_mixer == "conv"
        if self.has_mix:
            self.norm_mix, self.mix = nn.LayerNorm(D), CausalConv(cfg)
        if cfg.attention == "ska":
            self.norm_set, self.sets = nn.LayerNorm(D), SetKernelAttention(cfg)
        elif cfg.attention == "sdpa":
            self.norm_att, self.att = nn.LayerNorm(D), CausalSelfAttention(cfg)
        self.norm_mlp, self.mlp = nn.LayerNorm(D), MLP(cfg)

    def forward(self, x: Tensor, e: Tensor | None, pb: PaddedBank | None) -> Tensor:
        if self.has_mix:
            x = x + self.mix(self.norm_mix(x))
        if self.attention == "ska":
            x = x + self.sets(self.norm_set(x), e, pb)
        elif self.attention == "sdpa":
            x = x + self.att(self.norm_att(x))
        return x + self.mlp(self.norm_mlp(x))


class CausalLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.atoms = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.attention == "ska" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        self.head.weight = self.tok.weight  # tied LM head

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def n_params(self) -> int:
        """Trainable parameters; the tied head is counted once (parameters() dedupes it)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, tokens: Tensor, bank: Bank | PaddedBank | None = None) -> Tensor:
        """tokens [B, L] -> logits [B, L, V]; SKA needs the bank built from these tokens."""
        B, L = tokens.shape
        if L > self.cfg.seq_len:
            raise ValueError(f"sequence length {L} > LMConfig.seq_len={self.cfg.seq_len}")
        pos = self.pos(torch.arange(L, device=tokens.device))  # [L, D]
        x = self.drop(self.tok(tokens) + pos)  # [B, L, D]
        e = pb = None
        if self.atoms is not None:
            pb = self._padded(bank, B)
            e = self.atoms(pb.atoms)  # [B, S, W, D], shared by every layer's pooling
        for block in self.blocks:
            x = block(x, e, pb)
        return self.head(self.norm(x))

    def _padded(self, bank: Bank | PaddedBank | None, B: int) -> PaddedBank:
        if bank is None:
            raise ValueError("attention='ska' needs a bank built from the input tokens")
        if isinstance(bank, Bank):
            if (bank.window, bank.stride) != (self.cfg.window, self.cfg.stride):
                raise ValueError(
                    f"bank window/stride {bank.window}/{bank.stride} != config {self.cfg.window}/{self.cfg.stride}"
                )
            bank = bank.padded()
        if bank.sig.shape[0] != B or bank.sig.shape[-1] != self.cfg.minhash_k:
            raise ValueError(
                f"bank has {bank.sig.shape[0]} sequences × k={bank.sig.shape[-1]}; "
                f"batch has {B}, LMConfig.minhash_k={self.cfg.minhash_k}"
            )
        return bank
