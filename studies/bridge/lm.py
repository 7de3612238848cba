"""A tiny pre-LN causal transformer LM, its training loop and batched greedy decoding.

The bridge study trains two of these once (different tokenizers and widths) and then freezes
them; B must accept soft tokens, so `forward` takes `inputs_embeds` as well as ids. Padding:
`pad_mask` (True = real token) masks padded keys and numbers positions from each row's first
real token, so a left-padded row computes exactly what it computes unpadded — batched
generation from prompts of different lengths (the text baseline) relies on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from studies.train_loop import lr_at


class _Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = _Attention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Token + learned position embeddings, `n_layers` pre-LN blocks, final LayerNorm, untied head."""

    def __init__(self, vocab: int, d_model: int, n_layers: int = 2, n_heads: int = 4, max_len: int = 256):
        super().__init__()
        self.vocab, self.d_model, self.max_len = vocab, d_model, max_len
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(
        self,
        ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pad_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, vocab); with `return_hidden` also the last hidden states (B, T, d), after
        the final LayerNorm. Exactly one of `ids` / `inputs_embeds`."""
        if (ids is None) == (inputs_embeds is None):
            raise ValueError("TinyLM.forward: pass exactly one of ids / inputs_embeds")
        x = self.embed(ids) if inputs_embeds is None else inputs_embeds
        b, t, _ = x.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        if pad_mask is None:
            pos = torch.arange(t, device=x.device).expand(b, t)
            mask = None
        else:
            pad_mask = pad_mask.bool()
            pos = (pad_mask.long().cumsum(1) - 1).clamp(min=0)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            # a padded query sees itself only, so its (discarded) row is finite instead of NaN
            mask = (causal & pad_mask[:, None, :]) | torch.eye(t, dtype=torch.bool, device=x.device)
            mask = mask[:, None]
        x = x + self.pos(pos)
        for block in self.blocks:
            x = block(x, mask)
        hidden = self.ln_f(x)
        logits = self.head(hidden)
        return (logits, hidden) if return_hidden else logits

    @torch.no_grad()
    def embedding_rms(self) -> float:
        """RMS of the token-embedding table: the scale soft tokens are matched to."""
        return self.embed.weight.pow(2).mean().sqrt().item()


def lm_loss(model: TinyLM, ids: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """Next-token cross-entropy on right-padded `ids`; targets equal to `pad_id` are ignored."""
    logits = model(ids[:, :-1])
    targets = ids[:, 1:]
    if pad_id is not None:
        targets = targets.masked_fill(targets == pad_id, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def train_lm(
    model: TinyLM,
    batches: Sequence[torch.Tensor] | Iterator[torch.Tensor] | Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    seed: int = 0,
    pad_id: int | None = None,
    warmup: int = 0,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
) -> list[float]:
    """AdamW on the LM loss for `steps` steps; returns the per-step loss history.

    `batches`: right-padded id tensors (B, T): a list (visited in seeded shuffled epochs), an
    iterator (taken in order) or a callable `step -> batch`. Warm-up + cosine to 0.1·lr (studies/train_loop.lr_at)."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    history = []
    for step in range(steps):
        if callable(batches):
            ids = batches(step)
        elif isinstance(batches, Iterator):
            ids = next(batches)
        else:
            if not order:
                order = torch.randperm(len(batches), generator=gen).tolist()
            ids = batches[order.pop()]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = lm_loss(model, ids, pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        history.append(loss.item())
    model.eval()
    return history


def penalise_repeats(logits: torch.Tensor, generated: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL/HF repetition penalty on tokens already generated: positive logits ÷ penalty,
    negative × penalty. Only generated tokens count, not the prompt: the prompt differs by mode
    (text holds the question's ids, bridged holds none), and a penalty on it would treat them unequally."""
    if penalty == 1.0 or generated.shape[1] == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, generated, True)
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


def ban_repeated_ngrams(logits: torch.Tensor, generated: torch.Tensor, n: int) -> torch.Tensor:
    """No-repeat n-grams (HF `no_repeat_ngram_size`) over the generated tokens: a token that would
    complete an n-gram already generated in the same row gets logit −inf. n = 0 disables."""
    if n <= 0 or generated.shape[1] < n:
        return logits
    windows = generated.unfold(1, n, 1)  # (B, W, n)
    last = generated[:, generated.shape[1] - (n - 1) :]  # (B, n-1)
    hit = (windows[:, :, : n - 1] == last[:, None, :]).all(-1)  # (B, W)
    banned = torch.zeros_like(logits).scatter_add_(1, windows[:, :, -1], hit.to(logits.dtype)) > 0
    return logits.masked_fill(banned, -math.inf)


@torch.no_grad()
def generate(
    model: TinyLM,
    ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    pad_mask: torch.Tensor | None = None,
    max_new: int = 16,
    eos_id: int | None = None,
    repetition_penalty: float = 1.0,
    no_repeat_ngram: int = 0,
) -> torch.Tensor:
    """Greedy decoding of the whole batch at once from a prompt of ids or embeddings (left-padded
    with `pad_mask` when prompts differ in length). Returns (B, max_new) ids; after a row emits
    `eos_id` it is filled with `eos_id`, and decoding stops once every row has. No KV cache: the
    models are tiny and recomputing keeps one code path for ids and soft-token prompts."""
    if (ids is None) == (inputs_embeds is None):
        raise ValueError("generate: pass exactly one of ids / inputs_embeds")
    x = model.embed(ids) if inputs_embeds is None else inputs_embeds
    b, t, _ = x.shape
    if t + max_new > model.max_len:
        raise ValueError(f"prompt {t} + max_new {max_new} exceeds max_len={model.max_len}")
    mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if pad_mask is None else pad_mask.bool()
    out = torch.empty(b, 0, dtype=torch.long, device=x.device)
    done = torch.zeros(b, dtype=torch.bool, device=x.device)
    for _ in range(max_new):
        logits = model(inputs_embeds=x, pad_mask=mask)[:, -1]
        logits = penalise_repeats(logits, out, repetition_penalty)
        logits = ban_repeated_ngrams(logits, out, no_repeat_ngram)
        nxt = logits.argmax(-1)
        if eos_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            done |= nxt == eos_id
        out = torch.cat([out, nxt[:, None]], 1)
        if eos_id is not None and bool(done.all()):
            break
        x = torch.cat([x, model.embed(nxt)[:, None]], 1)
        mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.bool, device=x.device)], 1)
    if out.shape[1] < max_new:
        out = torch.cat([out, out.new_full((b, max_new - out.shape[1]), eos_id)], 1)
    return out
