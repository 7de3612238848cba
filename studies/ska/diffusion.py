"""Small DDPM (ε-prediction, cosine schedule) whose denoiser mixes tokens with SKA or SDPA.

DDPM (Ho et al., 2020) with the cosine ᾱ schedule (Nichol & Dhariwal, 2021):
x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε, loss ‖ε − ε̂(x_t, t)‖². The denoiser is a tiny DiT-like
transformer (``vit.Encoder``: pre-LN blocks, non-causal) over tokens, with a sinusoidal
timestep embedding (→ MLP) added to every token at the input and a zero-initialised output
projection (ε̂ = 0 at init, so the initial ε-MSE is 1). SKA and SDPA denoisers differ only
in the blocks' token mixing, exactly as in ``vit.py``.

- image: x_0 = image scaled to [−1, 1] [B, 3, 32, 32]; tokens = patch-4 patches (64).
  Atoms come from x_t: id = 2·patch_index + [mean(patch of x_t) > 0] (0 in [−1, 1] is the
  0.5 cut of docs/studies.md in [0, 1] units).
- text: x_0 = E[token] [B, L, d_embed] with E a FROZEN seeded Gaussian table whose rows are
  rescaled to norm √d_embed (unit variance per entry, the noise's scale); a learned table would
  need an anchor loss to keep it from collapsing. Noisy embeddings have no token ids, so
  the text atoms are the ROUNDED ids of x_t: argmax_v ⟨x_t, E_v⟩, the nearest row of E to
  x_t/√ᾱ_t (all rows have the same norm, so the rescaling by √ᾱ_t cancels out).

In both cases the bank is a function of x_t alone (``Denoiser.noisy_bank(x_t)``): the clean
target never reaches the model. Metrics: ε-MSE on held-out data at fixed timesteps with
seeded noise (``eps_mse``), and a DDIM sampler (η = 0, few steps) for samples and FID.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.images import to_signed
from ..train_loop import LoopResult, loop_config, train
from .banks import Bank
from .vit import BackboneConfig, Encoder, atom_bank, init_weights, patch_atoms, patchify, unpatchify

MODALITIES = ("image", "text")


@dataclass
class DiffusionConfig(BackboneConfig):
    modality: str = "image"  # image | text
    T: int = 200  # diffusion steps
    image_size: int = 32
    patch: int = 4
    channels: int = 3
    vocab_size: int = 256  # text
    seq_len: int = 64  # text
    d_embed: int = 16  # text: width of the frozen token embedding x_0 lives in
    embed_seed: int = 0  # text: seed of that table

    def __post_init__(self):
        ints = ("T", "image_size", "patch", "channels", "vocab_size", "seq_len", "d_embed")
        self._validate(ints, {"modality": MODALITIES}, self.n_atoms, self.n_tokens)

    @property
    def grid(self) -> tuple[int, ...]:
        g = self.image_size // self.patch
        return (g, g) if self.modality == "image" else (self.seq_len,)

    @property
    def n_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def n_atoms(self) -> int:
        return 2 * self.n_tokens if self.modality == "image" else self.vocab_size


def cosine_alpha_bar(T: int, s: float = 0.008) -> Tensor:
    """ᾱ_t for t = 0..T−1 (float64): f(t) = cos²((t/T + s)/(1 + s)·π/2), β_t ≤ 0.999."""
    f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)  # [T]
    return torch.cumprod(1.0 - betas, 0)


def q_sample(x0: Tensor, t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε; t int64 [B], alpha_bar [T]."""
    ab = alpha_bar.to(x0.device, torch.float32)[t].view(-1, *([1] * (x0.dim() - 1)))  # [B, 1, ...]
    return ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps t [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)  # [half]
    angles = t.float()[:, None] * freqs[None]
    return F.pad(torch.cat([angles.sin(), angles.cos()], -1), (0, dim - 2 * half))


class Denoiser(nn.Module):
    """ε̂(x_t, t): tokens of x_t + position + time embedding -> Encoder -> per-token ε."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg, D = cfg, cfg.d_model
        width = cfg.channels * cfg.patch**2 if cfg.modality == "image" else cfg.d_embed  # per-token input
        self.register_buffer("alpha_bar", cosine_alpha_bar(cfg.T).float(), persistent=False)
        if cfg.modality == "text":
            g = torch.Generator().manual_seed(cfg.embed_seed)
            table = torch.randn(cfg.vocab_size, cfg.d_embed, generator=g)
            self.register_buffer("table", F.normalize(table, dim=-1) * math.sqrt(cfg.d_embed))  # [V, E]
        self.inp = nn.Linear(width, D)
        self.pos = nn.Parameter(torch.zeros(cfg.n_tokens, D))
        self.time = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
        self.encoder = Encoder(cfg, cfg.n_atoms, cfg.n_tokens, cfg.grid)
        self.out = nn.Linear(D, width)
        self.apply(init_weights)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def n_params(self) -> int:
        """Trainable parameters (the text table E is a frozen buffer, not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def clean(self, data: Tensor) -> Tensor:
        """x_0 of raw data: images uint8 [B, C, H, W] -> [−1, 1]; token ids [B, L] -> E[ids]."""
        return to_signed(data) if self.cfg.modality == "image" else self.table[data]

    def nearest_tokens(self, x: Tensor) -> Tensor:
        """Rounding [B, L, E] -> ids [B, L]: argmax_v ⟨x, E_v⟩ (= nearest row at any scale)."""
        return (x @ self.table.T).argmax(-1)

    def noisy_atoms(self, x_t: Tensor) -> Tensor:
        """Atom ids [B, L] of the NOISY input only (see the module docstring)."""
        if self.cfg.modality == "image":
            return patch_atoms(x_t, self.cfg.patch, threshold=0.0)
        return self.nearest_tokens(x_t)

    def noisy_bank(self, x_t: Tensor) -> Bank:
        """SKA bank of x_t; takes no x_0, so the clean target cannot leak into the sets."""
        c = self.cfg
        return atom_bank(self.noisy_atoms(x_t), c.n_atoms, c.window, c.stride, c.minhash_k, c.hash_seed)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """x_t [B, C, H, W] (image) or [B, L, E] (text), t int64 [B] -> ε̂ of x_t's shape."""
        c = self.cfg
        tokens = patchify(x_t, c.patch) if c.modality == "image" else x_t  # [B, N, width]
        temb = self.time(timestep_embedding(t, c.d_model))  # [B, D]
        h = self.inp(tokens) + self.pos + temb[:, None]  # [B, N, D]
        bank = self.noisy_bank(x_t) if self.encoder.atoms is not None else None
        eps = self.out(self.encoder(h, bank))  # [B, N, width]
        return unpatchify(eps, c.patch, c.channels, c.image_size) if c.modality == "image" else eps


def diffusion_loss(model: Denoiser, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Mean ‖ε − ε̂(x_t, t)‖² per element; the model is shown x_t only."""
    x_t = q_sample(x0, t, eps, model.alpha_bar)
    return F.mse_loss(model(x_t, t), eps)


def train_diffusion(
    model: Denoiser,
    data: Tensor,
    val: Tensor | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    eval_every: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> LoopResult:
    """Train in place on raw ``data`` (uint8 images or token ids) with ``studies.train_loop``;
    per example t ~ U{0..T−1} and ε ~ N(0, I), drawn from the loop's batch generator.

    With ``val`` (raw data), ``eps_mse`` on it (noise seeded by ``seed``, the same at every
    evaluation, so checkpoints are compared on identical noise) is measured every
    ``eval_every`` steps and at the end, and the state with the lowest is restored.
    """
    device = next(model.parameters()).device
    cfg = loop_config(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
        grad_clip=grad_clip, eval_every=eval_every, target="eps_mse" if val is not None else (),
        target_mode="min", seed=seed,
    )  # fmt: skip

    def make_batch(idx, rng):
        x0 = model.clean(data[torch.from_numpy(idx)].to(device))
        t = torch.from_numpy(rng.integers(0, model.cfg.T, len(idx))).to(device)
        eps = torch.from_numpy(rng.standard_normal(tuple(x0.shape), dtype=np.float32)).to(device)
        return x0, t, eps

    def loss_fn(m, batch, step):
        return diffusion_loss(m, *batch), {}

    evaluate = None if val is None else (lambda m: eps_mse(m, val, seed=seed))
    return train(model, len(data), make_batch, loss_fn, cfg, evaluate, progress=progress, desc="diffusion")


def eval_timesteps(T: int, n: int = 5) -> list[int]:
    """n timesteps spread over the schedule, e.g. T 200 -> [0, 49, 99, 149, 199]."""
    return sorted({round(i * (T - 1) / max(n - 1, 1)) for i in range(n)})


@torch.no_grad()
def eps_mse(model: Denoiser, data: Tensor, timesteps=None, seed: int = 0, batch_size: int = 256) -> dict:
    """Held-out ε-MSE at fixed timesteps with seeded noise: eps_mse (mean), eps_mse_t{t}, imgs_per_s."""
    timesteps = eval_timesteps(model.cfg.T) if timesteps is None else list(timesteps)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    out, seconds = {}, 0.0
    for t_val in timesteps:
        gen = torch.Generator().manual_seed(seed * 100_003 + t_val)  # same noise for every model
        total = 0.0
        for lo in range(0, len(data), batch_size):
            x0 = model.clean(data[lo : lo + batch_size].to(device))
            eps = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.full((x0.shape[0],), t_val, dtype=torch.int64, device=device)
            t0 = time.perf_counter()
            total += float(diffusion_loss(model, x0, t, eps)) * x0.shape[0]
            seconds += time.perf_counter() - t0
        out[f"eps_mse_t{t_val}"] = total / max(len(data), 1)
    model.train(was_training)
    out["eps_mse"] = sum(out[f"eps_mse_t{t}"] for t in timesteps) / len(timesteps)
    out["imgs_per_s"] = len(data) * len(timesteps) / max(seconds, 1e-9)  # denoiser calls per second
    return out


@torch.no_grad()
def ddim_sample(model: Denoiser, n: int, steps: int = 20, seed: int = 0, batch_size: int = 256) -> Tensor:
    """DDIM (η = 0) from pure noise in ``steps`` steps -> x_0 estimates [n, ...] (images in [−1, 1])."""
    c, device, was_training = model.cfg, next(model.parameters()).device, model.training
    model.eval()
    shape = (c.channels, c.image_size, c.image_size) if c.modality == "image" else (c.seq_len, c.d_embed)
    ts = torch.linspace(c.T - 1, 0, min(steps, c.T)).round().long().unique_consecutive().tolist()
    gen, ab, outs = torch.Generator().manual_seed(seed), model.alpha_bar, []
    for lo in range(0, n, batch_size):
        x = torch.randn((min(batch_size, n - lo), *shape), generator=gen).to(device)
        for i, t_val in enumerate(ts):
            t = torch.full((x.shape[0],), t_val, dtype=torch.int64, device=device)
            a_t, a_prev = ab[t_val], ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            x0 = (x - (1 - a_t).sqrt() * model(x, t)) / a_t.sqrt()
            if c.modality == "image":
                x0 = x0.clamp(-1.0, 1.0)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # consistent with the clamped x_0
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        outs.append(x)
    model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, *shape)
