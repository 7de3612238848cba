"""sudoku_data: one puzzle set per study, split into disjoint train / val / test.

Default: puzzles from the project's unique-solution generator; or a Sudoku-Extreme /
Enso CSV file (its bytes are hashed into the fingerprint).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="sudoku_data",
    reads=("sudoku_source", "sudoku_csv", "n_puzzles", "max_givens", "target_givens", "n_val", "n_test", "data_seed"),
    code=("studies.data.sudoku", "studies.poh.sudoku_task"),
    choices={"sudoku_source": ("generated", "csv")},
    external=lambda p: [Path(p["sudoku_csv"])] if p["sudoku_source"] == "csv" else [],
)


def run(ctx: Context) -> dict:
    import numpy as np

    from studies.data import sudoku
    from studies.poh.sudoku_task import three_way_split

    p = ctx.params
    if p["sudoku_source"] == "csv":
        data = sudoku.load_csv(p["sudoku_csv"])
    else:
        data = sudoku.generate(
            p["n_puzzles"],
            p["data_seed"],
            max_givens=p["max_givens"],
            target_givens=p["target_givens"],
            workers=ctx.threads,
        )
    splits = dict(
        zip(("train", "val", "test"), three_way_split(data, p["n_val"], p["n_test"], p["data_seed"]), strict=False)
    )
    for name, part in splits.items():
        np.savez(ctx.out / f"{name}.npz", **{k: v for k, v in part.items() if isinstance(v, np.ndarray)})
    givens = (data["puzzles"] > 0).sum(1)
    return {f"n_{k}": len(v["puzzles"]) for k, v in splits.items()} | {"mean_givens": float(givens.mean())}
