"""How much a trained SKA model uses its set-attention branch.

The branch enters the residual stream as σ(ρ)·W_o(...) with ρ initialised at -3 (σ ≈ 0.05,
as in the source). A short run can leave it nearly shut, and then an "SKA" model is really
its causal conv and MLP. ``set_gates`` reads the gates; ``without_set_attention`` switches
every branch off so evaluation can measure what it contributes (``ska_usage``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .model import SetKernelAttention


def _branches(model: nn.Module) -> list[SetKernelAttention]:
    return [m for m in model.modules() if isinstance(m, SetKernelAttention)]


def set_gates(model: nn.Module) -> list[float]:
    """σ(ρ) of every SKA branch, input to output; empty for a model without one."""
    return [torch.sigmoid(m.rho).item() for m in _branches(model)]


@contextmanager
def without_set_attention(model: nn.Module) -> Iterator[int]:
    """Within the block every SKA branch outputs zeros; yields how many were switched off."""
    branches = _branches(model)
    handles = [m.register_forward_hook(lambda _m, _inp, out: torch.zeros_like(out)) for m in branches]
    try:
        yield len(branches)
    finally:
        for h in handles:
            h.remove()


def ska_usage(model: nn.Module, metric: str, evaluate: Callable[[], float]) -> dict[str, float]:
    """{ska_gate_mean, <metric>_without_ska}: the mean gate, and ``evaluate()`` re-run with
    every SKA branch off. Compare the latter with ``metric``; {} for a model without SKA."""
    gates = set_gates(model)
    if not gates:
        return {}
    with without_set_attention(model):
        off = evaluate()
    return {"ska_gate_mean": sum(gates) / len(gates), f"{metric}_without_ska": off}
