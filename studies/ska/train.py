"""Training and evaluation of the causal LMs in ``model.py`` (SKA and SDPA alike).

``train_lm`` hands the loop to ``studies.train_loop`` (AdamW, warm-up + cosine, clipping,
seeded epochs): it only says how a batch is drawn and scored, and, given validation data,
keeps the state of least validation loss. ``evaluate_lm`` reports mean token NLL, perplexity
and throughput on whatever split it is given. The bank of an LMData must be built from
``inputs`` (never from the targets or the full L+1 chunk), or the SKA model would see the
next token.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train_loop import LoopConfig, LoopResult, train
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

    def spaced(self, n: int) -> LMData:
        """``n`` sequences evenly spaced over the data (all of it when n is 0 or >= len): a
        fixed, cheap sample that still spans every part of the split."""
        if n <= 0 or n >= len(self):
            return self
        idx = torch.linspace(0, len(self) - 1, n).round().long()
        return LMData(*self.batch(idx))


def lm_loss(model: nn.Module, x: Tensor, y: Tensor, bank: Bank | None) -> tuple[Tensor, int]:
    """Summed token NLL and the number of scored tokens."""
    logits = model(x, bank)  # [B, L, V]
    nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE, reduction="sum")
    return nll, int((y != IGNORE).sum())


def train_lm(
    model: nn.Module, data: LMData, cfg: LoopConfig, val: LMData | None = None, progress: bool = True
) -> LoopResult:
    """Train in place on ``data``; with ``val``, evaluate its loss every ``cfg.eval_every`` steps
    (and at the last) and keep the state where it was least. Train records: step, loss (mean
    token NLL), lr, grad_norm, time_s; eval records: step, val_loss."""
    device = next(model.parameters()).device

    def make_batch(idx, _rng):
        return data.batch(torch.from_numpy(idx), device)

    def loss_fn(model, batch, _step):
        nll, n = lm_loss(model, *batch)
        return nll / max(n, 1), {}

    def evaluate(model):
        return {"val_loss": evaluate_lm(model, val, cfg.batch_size)["loss"]}

    if val is None:
        return train(model, len(data), make_batch, loss_fn, cfg, None, progress)
    cfg = replace(cfg, target="val_loss", target_mode="min")
    return train(model, len(data), make_batch, loss_fn, cfg, evaluate, progress)


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: LMData, batch_size: int) -> dict:
    """loss (mean token NLL), perplexity, tokens_per_s, n_tokens over all of ``data``."""
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
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "tokens_per_s": count / max(seconds, 1e-9),
        "n_tokens": count,
    }
