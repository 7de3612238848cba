"""report: the study's table (markdown + CSV) and plots, from every cell's metrics.

Named cells (such as the SDPA baseline) are not on the grid: they appear in the table and
as dashed reference lines in every panel of the plot.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="report",
    reads=("report_x", "report_hue", "report_metric"),
    needs=("train", "evaluate"),
    code=("studies.report",),
    gather=True,
)


def run(ctx: Context) -> dict:
    import json

    from studies.report import facet_plot, write_table

    rows = []
    for cell, info in ctx.cells.items():
        evaluate = next(u for u in ctx.inputs("evaluate") if cell in u.cells)
        train = next(u for u in ctx.inputs("train") if cell in u.cells)
        rows.append({"cell": cell, "named": info["named"], **info["params"], **train.metrics(),
                     **evaluate.metrics(), "curve": json.loads((train.path / "history.json").read_text())})
    p, keys = ctx.params, list(next(iter(ctx.cells.values()))["params"])
    table = write_table([{k: v for k, v in r.items() if k != "curve"} for r in rows], ctx.out / "table",
                        sort_by=p["report_metric"])
    facet_plot(rows, keys, x=p["report_x"], hue=p["report_hue"], metric=p["report_metric"],
               path=ctx.out / f"{p['report_metric']}_vs_{p['report_x']}.png", title=ctx.study)
    best = table.row(0, named=True)
    return {"cells": len(rows), "best_cell": best["cell"], f"best_{p['report_metric']}": best[p["report_metric"]]}
