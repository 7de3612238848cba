"""evaluate: greedy roll-outs on held-out mazes: accuracy, optimality (≤ 1.05 × BFS), exact."""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.maze_train import load_split

SPEC = StageSpec(name="evaluate", reads=(), needs=("maze_data", "train"), code=("studies.poh.maze_task",))


def run(ctx: Context) -> dict:
    from dataclasses import replace

    import torch

    from studies.poh.maze_models import MazeConfig, build_maze_model
    from studies.poh.maze_task import evaluate_maze

    torch.set_num_threads(ctx.threads)
    cfg = json.loads((ctx.input("train") / "config.json").read_text())
    test = load_split(ctx, "test")
    kind = cfg.pop("kind")
    model = build_maze_model(replace(MazeConfig(**cfg), n=int(test["n"])), kind)
    model.load_state_dict(torch.load(ctx.input("train") / "model.pt", weights_only=True))
    return {f"test_{k}": v for k, v in evaluate_maze(model, test).items()}
