"""evaluate: held-out test accuracy (blank cells and whole grids) from the puzzle alone, with
the floors beside it: ``chance`` (1/9) and ``candidate_uniform`` (a uniform guess among the
digits the givens allow, on the same test puzzles)."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.poh.sudoku_train import load_split

SPEC = StageSpec(
    name="evaluate",
    reads=(),
    needs=("sudoku_data", "train"),
    code=("studies.poh.sudoku_task", "studies.poh.metrics"),
    metrics=("test_cell_acc", "test_grid_acc", "test_cell_acc_all81", "test_loss", "chance", "candidate_uniform"),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import torch

    from studies.poh.metrics import candidate_uniform_acc
    from studies.poh.sudoku_task import build_sudoku_model, evaluate_sudoku

    torch.set_num_threads(ctx.threads)
    model, _ = load_trained(ctx.input("train"), build_sudoku_model)
    model.to(ctx.device)
    test = load_split(ctx, "test")
    metrics = evaluate_sudoku(model, test)
    floors = {"chance": 1 / 9, "candidate_uniform": candidate_uniform_acc(test["puzzles"], test["solutions"])}
    return {f"test_{k}": v for k, v in metrics.items()} | floors
