"""evaluate: held-out test accuracy (blank cells and whole grids) from the puzzle alone."""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.sudoku_train import load_split

SPEC = StageSpec(name="evaluate", reads=(), needs=("sudoku_data", "train"), code=("studies.poh.sudoku_task",))


def run(ctx: Context) -> dict:
    import torch

    from studies.poh.sudoku_task import build_sudoku_model, evaluate_sudoku

    torch.set_num_threads(ctx.threads)
    model = build_sudoku_model(json.loads((ctx.input("train") / "config.json").read_text()))
    model.load_state_dict(torch.load(ctx.input("train") / "model.pt", weights_only=True))
    metrics = evaluate_sudoku(model, load_split(ctx, "test"))
    return {f"test_{k}": v for k, v in metrics.items()} | {"chance": 1 / 9}
