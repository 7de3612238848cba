"""The train → evaluate hand-over, in one place so the file names cannot drift apart.

Every train stage writes ``model.pt`` (the weights), ``config.json`` (what rebuilds the
model) and ``history.json`` (per-step records; the reports draw training curves from it).
Every evaluate stage rebuilds the model from the first two. Weights are saved from and load
onto the CPU, so an artifact trained on one machine (a GPU) evaluates on any other that
shares the store; the stage then moves the model to ``ctx.device``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def cpu_state(model):
    """The model's state dict with every tensor on the CPU (its version metadata kept), so the
    saved weights load anywhere whatever device trained them."""
    state = model.state_dict()
    moved = type(state)((k, v.cpu()) for k, v in state.items())
    moved._metadata = getattr(state, "_metadata", None)
    return moved


def save_trained(out: Path, model, config: dict, history: list[dict]) -> None:
    import torch

    torch.save(cpu_state(model), out / "model.pt")
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "history.json").write_text(json.dumps(history))


def load_trained(train_dir: Path, build: Callable[[dict], object]):
    """(model with the trained weights, its config); ``build(config)`` makes the model."""
    import torch

    config = json.loads((train_dir / "config.json").read_text())
    model = build(config)
    model.load_state_dict(torch.load(train_dir / "model.pt", map_location="cpu", weights_only=True))
    return model, config


def load_history(train_dir: Path) -> list[dict]:
    """The per-step training records a train stage saved."""
    return json.loads((train_dir / "history.json").read_text())


def final_loss(history: list[dict]) -> float:
    """Mean training loss over the last 10% of steps: the end of a noisy curve, smoothed."""
    tail = history[-max(1, len(history) // 10) :]
    return sum(h["loss"] for h in tail) / len(tail)
