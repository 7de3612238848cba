"""Training and evaluation of the causal LMs in ``model.py`` (SKA and SDPA alike).

``train_lm`` runs AdamW with linear warm-up then cosine decay to lr/10, gradient clipping,
and seeded randomness: ``torch.manual_seed(seed)`` for dropout and a ``torch.Generator``
seeded alike for batch order, so one seed fixes a run. ``evaluate_lm`` reports mean token
NLL, perplexity and throughput. The bank of an LMData must be built from ``inputs`` (never
from the targets or the full L+1 chunk), or the SKA model would see the next token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .banks import Bank

IGNORE = -100  # target value that is not scored


@dataclass
class LMData:
    """Fixed-length examples: inputs/targets [N, L] int64; bank over ``inputs`` (SKA) or None."""

    inputs: Tensor
    targets: Tensor
    bank: Bank | None = None

    def __post_init__(self):
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise ValueError(
                f"inputs {tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)} must be equal [N, L]"
            )
        if self.bank is not None and self.bank.n_seqs != len(self):
            raise ValueError(f"bank has {self.bank.n_seqs} sequences, data has {len(self)}")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, idx: Tensor, device=None) -> tuple[Tensor, Tensor, Bank | None]:
        """(inputs, targets, bank) of rows ``idx``, moved to ``device``."""
        bank = None if self.bank is None else self.bank.select(idx).to(device)
        return self.inputs[idx].to(device), self.targets[idx].to(device), bank


@dataclass
class LMBatches:
    """Random batches of an LMData: shuffled epochs drawn from the caller's generator."""

    data: LMData
    batch_size: int

    def __post_init__(self):
        if self.batch_size < 1 or len(self.data) == 0:
            raise ValueError(f"need batch_size >= 1 and data, got {self.batch_size}, {len(self.data)}")

    def iterate(self, generator: torch.Generator, device=None) -> Iterator[tuple]:
        n, bs = len(self.data), min(self.batch_size, len(self.data))
        while True:
            order = torch.randperm(n, generator=generator)
            for lo in range(0, n - bs + 1, bs):  # drop the ragged tail of each epoch
                yield self.data.batch(order[lo : lo + bs], device)


def lm_loss(model: nn.Module, x: Tensor, y: Tensor, bank: Bank | None) -> tuple[Tensor, int]:
    """Summed token NLL and the number of scored tokens."""
    logits = model(x, bank)  # [B, L, V]
    nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE, reduction="sum")
    return nll, int((y != IGNORE).sum())


def lr_at(step: int, steps: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up to lr, then cosine from lr to lr/10 at the last step."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps - 1)
    return lr / 10 + (lr - lr / 10) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_lm(
    model: nn.Module,
    batches: LMBatches,
    steps: int,
    lr: float,
    warmup_steps: int,
    weight_decay: float,
    grad_clip: float,
    seed: int,
    progress: bool = True,
) -> list[dict]:
    """Train in place; one record per step: step, loss (mean token NLL), lr, grad_norm, time_s."""
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator().manual_seed(seed)  # batch order
    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and tables
    other = [p for p in model.parameters() if p.dim() < 2]  # biases, norms, alpha, rho
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
    )
    model.train()
    history, stream, t0 = [], batches.iterate(gen, device), time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc="train", leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup_steps)
        x, y, bank = next(stream)
        nll, n = lm_loss(model, x, y, bank)
        loss = nll / max(n, 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
        opt.step()
        history.append(
            {
                "step": step,
                "loss": loss.item(),
                "lr": opt.param_groups[0]["lr"],
                "grad_norm": float(norm),
                "time_s": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    return history


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: LMData, batch_size: int) -> dict:
    """val_loss (mean token NLL), perplexity, tokens_per_s, n_tokens over all of ``data``."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    total, count, t0 = 0.0, 0, time.perf_counter()
    for lo in range(0, len(data), batch_size):
        x, y, bank = data.batch(torch.arange(lo, min(lo + batch_size, len(data))), device)
        nll, n = lm_loss(model, x, y, bank)
        total, count = total + nll.item(), count + n
    seconds = time.perf_counter() - t0
    model.train(was_training)
    loss = total / max(count, 1)
    return {
        "val_loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "tokens_per_s": count / max(seconds, 1e-9),
        "n_tokens": count,
    }
