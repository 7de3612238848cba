"""Shared by the report stages: one row per cell from its train and evaluate artifacts, and
the one-factor-at-a-time ablation table and bars."""

from __future__ import annotations

from pipeline.spec import Context
from stages.common.trained import load_history


def cell_rows(ctx: Context) -> list[dict]:
    """Per cell: its name, whether it is named, varying params, train and evaluate metrics,
    and its training curve (``curve``); nested metric values are dropped."""
    rows = []
    for cell, info in ctx.cells.items():
        train = next(u for u in ctx.inputs("train") if cell in u.cells)
        evaluate = next(u for u in ctx.inputs("evaluate") if cell in u.cells)
        row = {"cell": cell, "named": info["named"], **info["params"], **train.metrics(), **evaluate.metrics()}
        row = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
        row["curve"] = load_history(train.path)
        rows.append(row)
    return rows


def write_ablations(ctx: Context, summary: list[dict], factors: list[str], metric: str) -> None:
    """``ablations.{md,csv,png}``: each factor against the base cell (see one_factor_rows)."""
    from studies.report import one_factor_bars, one_factor_rows, write_table

    ablations = one_factor_rows(summary, ctx.base, factors, metric)
    if ablations:
        write_table(ablations, ctx.out / "ablations", sort_by="factor", first=("factor", "setting"))
        one_factor_bars(ablations, metric, ctx.out / "ablations.png", ctx.study)
