"""report: cells ranked by a metric (mean ± s.d. over seeds) as tables and a bar chart,
and each factor against the base cell (``ablations``).

``report_goal`` says which way is better: max (accuracy) or min (ε-MSE, FID).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="report",
    reads=("report_metric", "report_goal", "report_replicates"),
    needs=("train", "evaluate"),
    code=("studies.report",),
    gather=True,
    choices={"report_goal": ("min", "max")},
)


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, write_ablations
    from studies.report import bar_plot, curves_plot, replicate_summary, write_table

    p, rows = ctx.params, cell_rows(ctx)
    keys = list(next(iter(ctx.cells.values()))["params"])
    metric, descending = p["report_metric"], p["report_goal"] == "max"
    numeric = list(  # every numeric metric any cell has, in first-seen order
        dict.fromkeys(
            k
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys
        )
    )
    write_table(
        [{k: v for k, v in r.items() if k != "curve"} for r in rows],
        ctx.out / "table",
        sort_by=metric,
        first=("cell",),
        descending=descending,
    )
    summary = replicate_summary(rows, keys, p["report_replicates"], numeric)
    table = write_table(
        summary, ctx.out / "summary", sort_by=metric, first=("cell", "replicates"), descending=descending
    )
    write_ablations(ctx, summary, [k for k in keys if k != p["report_replicates"]], metric)
    bar_plot(
        summary,
        metric,
        ctx.out / f"{metric}.png",
        title=f"{ctx.study}: {metric} (mean ± s.d.)",
        reference=rows[0].get("chance"),
        best_first=descending,
    )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    best = table.row(0, named=True)
    return {"cells": len(rows), "best": best["cell"], f"best_{metric}": best[metric]}
