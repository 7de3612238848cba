"""sudoku_data: one puzzle set per study, split into train / val / test disjoint by content
(even up to the digit relabelling and transpose training augments with).

`generated`: the project's unique-solution generator, one set split three ways.
`csv`: the source's protocol (docs/studies.md): a train file (`sudoku_csv`) subsampled to
`n_puzzles` by a seeded shuffle, the last `n_val` of them = val, and a separate official
test file (`sudoku_test_csv`), whole or capped to a seeded `n_test` (0 = whole). Both files'
bytes are hashed into the fingerprint. Generic: any Sudoku study can put this stage first.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.params import ParamsError
from pipeline.spec import Context, StageSpec


def _files(p) -> list[Path]:
    """The CSV files whose bytes define the data (hashed into the fingerprint)."""
    if p["sudoku_source"] != "csv":
        return []
    files = []
    for key, what in (("sudoku_csv", "train"), ("sudoku_test_csv", "official test")):
        path = Path(p[key])
        if not p[key] or not path.is_file():
            raise ParamsError(
                f"params.{key}",
                f"{p[key]!r} is not a file; with sudoku_source: csv it must name the {what} CSV "
                "(Sudoku-Extreme: source,question,answer,rating; Enso: puzzle,solution)",
            )
        files.append(path)
    return files


SPEC = StageSpec(
    name="sudoku_data",
    reads=(
        "sudoku_source",
        "sudoku_csv",
        "sudoku_test_csv",
        "n_puzzles",
        "max_givens",
        "target_givens",
        "n_val",
        "n_test",
        "data_seed",
    ),
    code=("studies.data.sudoku", "studies.poh.sudoku_task"),
    version=2,
    choices={"sudoku_source": ("generated", "csv")},
    types=dict.fromkeys(("n_puzzles", "max_givens", "target_givens", "n_val", "n_test", "data_seed"), int)
    | dict.fromkeys(("sudoku_csv", "sudoku_test_csv"), str),
    ranges={**dict.fromkeys(("n_puzzles", "n_val"), ">= 1"), "n_test": ">= 0"},
    checks={  # studies.data.sudoku.generate's own bounds; csv puzzles come with their givens
        "generated: 17 <= max_givens >= target_givens": lambda max_givens, target_givens, sudoku_source: (
            sudoku_source != "generated" or 17 <= max_givens >= target_givens
        )
    },
    external=_files,
)


def run(ctx: Context) -> dict:
    import numpy as np

    from studies.data import sudoku
    from studies.poh.sudoku_task import check_disjoint, three_way_split

    p = ctx.params
    if p["sudoku_source"] == "csv":
        train_file, test_file = (sudoku.load_csv(f) for f in _files(p))
        parts = sudoku.file_splits(train_file, test_file, p["n_puzzles"], p["n_val"], p["n_test"], p["data_seed"])
        files = {"n_train_file": len(train_file["puzzles"]), "n_test_file": len(test_file["puzzles"])}
    else:
        data = sudoku.generate(
            p["n_puzzles"],
            p["data_seed"],
            max_givens=p["max_givens"],
            target_givens=p["target_givens"],
            workers=ctx.threads,
        )
        parts, files = three_way_split(data, p["n_val"], p["n_test"], p["data_seed"]), {}
    splits = dict(zip(("train", "val", "test"), parts, strict=True))
    check_disjoint(**{k: {"puzzles": sudoku.canonical(v["puzzles"])} for k, v in splits.items()})
    for name, part in splits.items():
        np.savez(ctx.out / f"{name}.npz", **{k: v for k, v in part.items() if isinstance(v, np.ndarray)})
    givens = np.concatenate([v["puzzles"] for v in splits.values()]) > 0
    return (
        {f"n_{k}": len(v["puzzles"]) for k, v in splits.items()} | files | {"mean_givens": float(givens.sum(1).mean())}
    )
