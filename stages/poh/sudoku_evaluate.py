"""evaluate: held-out test accuracy (blank cells and whole grids) from the puzzle alone."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.poh.sudoku_train import load_split

SPEC = StageSpec(name="evaluate", reads=(), needs=("sudoku_data", "train"), code=("studies.poh.sudoku_task",))


def run(ctx: Context) -> dict:
    import torch

    from studies.poh.sudoku_task import build_sudoku_model, evaluate_sudoku

    torch.set_num_threads(ctx.threads)
    model, _ = load_trained(ctx.input("train"), build_sudoku_model)
    metrics = evaluate_sudoku(model, load_split(ctx, "test"))
    return {f"test_{k}": v for k, v in metrics.items()} | {"chance": 1 / 9}
