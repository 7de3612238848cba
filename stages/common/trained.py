"""The train → evaluate hand-over, in one place so the file names cannot drift apart.

Every train stage writes ``model.pt`` (the weights), ``config.json`` (what rebuilds the
model) and ``history.json`` (per-step records; the reports draw training curves from it).
Every evaluate stage rebuilds the model from the first two. Weights load onto the CPU, so
an artifact trained on one machine evaluates on any other that shares the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def save_trained(out: Path, model, config: dict, history: list[dict]) -> None:
    import torch

    torch.save(model.state_dict(), out / "model.pt")
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
