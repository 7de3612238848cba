"""maze_data: DFS mazes with BFS shortest paths, split by maze into train / val / test.

Records how many mazes were drawn to keep the requested number (the source recorded the
requested counts); one generation is split, so no maze is in two splits.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="maze_data",
    reads=("maze_n", "n_mazes", "algorithm", "min_path_frac", "n_val", "n_test", "data_seed"),
    code=("studies.data.mazes", "studies.poh.maze_task"),
    choices={"algorithm": ("dfs", "wilson")},
    types=dict.fromkeys(("maze_n", "n_mazes", "n_val", "n_test", "data_seed"), int) | {"min_path_frac": float},
    ranges={**dict.fromkeys(("maze_n", "n_mazes", "n_val", "n_test"), ">= 1"), "min_path_frac": "[0, 1]"},
    checks={
        "n_val + n_test < n_mazes (training mazes are left)": lambda n_val, n_test, n_mazes: n_val + n_test < n_mazes
    },
)


def run(ctx: Context) -> dict:
    import numpy as np

    from studies.data.mazes import generate_dataset
    from studies.poh.maze_task import split_mazes

    p = ctx.params
    data = generate_dataset(p["n_mazes"], p["maze_n"], p["algorithm"], p["data_seed"], p["min_path_frac"])
    splits = dict(
        zip(("train", "val", "test"), split_mazes(data, p["n_val"], p["n_test"], p["data_seed"]), strict=False)
    )
    for name, part in splits.items():
        np.savez(ctx.out / f"{name}.npz", **{k: np.asarray(v) for k, v in part.items()})
    return {f"n_{k}": len(v["start"]) for k, v in splits.items()} | {
        "n_tried": int(data["n_tried"]),
        "n_kept": int(data["n_kept"]),
    }
