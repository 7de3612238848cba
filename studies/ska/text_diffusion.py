"""Token denoising with the text DDPM of ``diffusion.py``: token recovery from one denoiser call.

The text denoiser (``DiffusionConfig(modality="text")``) works on x_0 = E[ids], E a frozen
table whose rows all have norm √d_embed. From x_t and the predicted noise ε̂ the one-step
estimate of the clean embeddings is

    x̂_0 = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t,

and rounding x̂_0 to the nearest row of E gives predicted ids. ``token_recovery`` is that
metric as a pure function of (x_t, ε̂, t, ids, E, ᾱ); ``token_accuracy`` runs it on held-out
sequences at fixed noise levels (t/T = 0.25, 0.5, 0.75 by default) with the seeded noise of
``diffusion.eps_mse`` (the same noise at the same t), and reports next to it the no-model
baseline ε̂ = 0, i.e. rounding x_t itself (x̂_0 = x_t/√ᾱ_t): what the denoiser adds over
reading each noisy token on its own is the gap between the two.

``train_denoiser`` trains on token windows through ``studies.train_loop``, keeping the state
of least validation ε-MSE.

Kept apart from ``diffusion.py`` so the image study's code fingerprint does not move.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from ..train_loop import LoopConfig, LoopResult, train
from .diffusion import Denoiser, diffusion_loss, eps_mse, q_sample

NOISE_LEVELS = (0.25, 0.5, 0.75)  # t/T of the token-recovery metric


def level_timesteps(T: int, levels=NOISE_LEVELS) -> list[int]:
    """Timesteps at fractions t/T of the schedule, e.g. T 200 -> [50, 100, 150]."""
    return sorted({min(T - 1, max(0, round(f * T))) for f in levels})


def predict_x0(x_t: Tensor, eps_hat: Tensor, t: Tensor, alpha_bar: Tensor) -> Tensor:
    """One-step estimate x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t; x_t, ε̂ [B, ...], t int64 [B]."""
    ab = alpha_bar.to(x_t.device, torch.float32)[t].view(-1, *([1] * (x_t.dim() - 1)))
    return (x_t - (1.0 - ab).sqrt() * eps_hat) / ab.sqrt()


def nearest_rows(x: Tensor, table: Tensor) -> Tensor:
    """Index of the Euclidean-nearest row of ``table`` [V, E] for each vector of x [..., E]."""
    d2 = (table * table).sum(-1) - 2.0 * (x @ table.T)  # ‖x − E_v‖² − ‖x‖²: same argmin
    return d2.argmin(-1)


def token_recovery(x_t: Tensor, eps_hat: Tensor, t: Tensor, ids: Tensor, table: Tensor, alpha_bar: Tensor) -> Tensor:
    """Bool [B, L]: does x̂_0 (from x_t and ε̂) round to the true id? ``.float().mean()`` = accuracy."""
    return nearest_rows(predict_x0(x_t, eps_hat, t, alpha_bar), table) == ids


@torch.no_grad()
def token_accuracy(model: Denoiser, ids: Tensor, levels=NOISE_LEVELS, seed: int = 0, batch_size: int = 256) -> dict:
    """Held-out token recovery at fixed noise levels: token_acc_t{t}, token_acc (mean over levels),
    and the rounding-x_t baseline token_acc_noisy_t{t}, token_acc_noisy. ``ids`` [N, L]."""
    if model.cfg.modality != "text":
        raise ValueError("token_accuracy needs a text denoiser")
    timesteps = level_timesteps(model.cfg.T, levels)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    out, n = {}, max(ids.numel(), 1)
    for t_val in timesteps:
        gen = torch.Generator().manual_seed(seed * 100_003 + t_val)  # as eps_mse: same noise at the same t
        hits = noisy = 0
        for lo in range(0, len(ids), batch_size):
            tok = ids[lo : lo + batch_size].to(device)
            x0 = model.clean(tok)
            eps = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.full((x0.shape[0],), t_val, dtype=torch.int64, device=device)
            x_t = q_sample(x0, t, eps, model.alpha_bar)
            args = (t, tok, model.table, model.alpha_bar)
            hits += int(token_recovery(x_t, model(x_t, t), *args).sum())
            noisy += int(token_recovery(x_t, torch.zeros_like(x_t), *args).sum())
        out[f"token_acc_t{t_val}"], out[f"token_acc_noisy_t{t_val}"] = hits / n, noisy / n
    model.train(was_training)
    for key in ("token_acc", "token_acc_noisy"):
        out[key] = sum(out[f"{key}_t{t}"] for t in timesteps) / len(timesteps)
    return out


def train_denoiser(
    model: Denoiser, ids: Tensor, cfg: LoopConfig, val: Tensor, eval_seed: int = 0, progress: bool = True
) -> LoopResult:
    """Train in place on token windows ``ids`` [N, L]: t ~ U{0..T−1}, ε ~ N(0, I) from the
    loop's batch generator. Every ``cfg.eval_every`` steps (and at the last) the ε-MSE on
    ``val`` (seeded noise, ``eval_seed``) is measured as ``val_eps_mse``; the state where it
    was least is kept."""
    device = next(model.parameters()).device

    def make_batch(idx: np.ndarray, rng: np.random.Generator):
        x0 = model.clean(ids[torch.from_numpy(idx)].to(device))
        t = torch.from_numpy(rng.integers(model.cfg.T, size=len(idx))).to(device)
        eps = torch.from_numpy(rng.standard_normal(tuple(x0.shape), dtype=np.float32)).to(device)
        return x0, t, eps

    def loss_fn(model, batch, _step):
        return diffusion_loss(model, *batch), {}

    def evaluate(model):
        return {"val_eps_mse": eps_mse(model, val, seed=eval_seed)["eps_mse"]}

    cfg = replace(cfg, target="val_eps_mse", target_mode="min")
    return train(model, len(ids), make_batch, loss_fn, cfg, evaluate, progress)
