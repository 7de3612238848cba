"""evaluate: greedy roll-outs on held-out mazes: accuracy, optimality (≤ 1.05 × BFS), exact,
junction accuracy with its chance, and the floor: the same roll-out on random scores."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.poh.maze_train import load_split

SPEC = StageSpec(name="evaluate", reads=(), needs=("maze_data", "train"), code=("studies.poh.maze_task",), gpus=1)


def run(ctx: Context) -> dict:
    from dataclasses import replace

    import torch

    from studies.poh.maze_models import MazeConfig, build_maze_model
    from studies.poh.maze_task import evaluate_maze, random_rollout_floor

    torch.set_num_threads(ctx.threads)
    test = load_split(ctx, "test")

    def build(cfg: dict):
        size = {k: v for k, v in cfg.items() if k != "kind"}
        return build_maze_model(replace(MazeConfig(**size), n=int(test["n"])), cfg["kind"])

    model, _ = load_trained(ctx.input("train"), build)
    model.to(ctx.device)
    metrics = evaluate_maze(model, test) | random_rollout_floor(test, seed=0)
    return {f"test_{k}": v for k, v in metrics.items()}
