"""report: cells ranked by a metric (mean ± s.d. over seeds, with n) as tables (markdown, CSV,
and LaTeX with the best value in bold by ``report_goal``) and a bar chart, each row's
difference from a reference cell with its 95 % CI, and each factor against the base cell
(``ablations``).

``report_goal`` says which way is better: max (accuracy) or min (ε-MSE, FID).
``report_reference`` names what the summary compares with: ``base`` or a named cell.
Floors the evaluate stage reports (``chance``, ``candidate_uniform``) are drawn as lines.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SPEC = StageSpec(
    name="report",
    reads=("report_metric", "report_goal", "report_replicates", "report_reference"),
    needs=("train", "evaluate"),
    code=("studies.report", "studies.stats"),
    gather=True,
    choices={"report_goal": ("min", "max")},
    refers={"report_metric": "metric", "report_replicates": "param", "report_reference": "cell"},
)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(images=("{report_metric}.png", "train_curves.png"), bars=(("summary.csv", "cell", "{report_metric}"),))
FLOORS = ("chance", "candidate_uniform")  # metric names that are baselines, not results
# the same for every seed of a cell: averaged without an s.d. (``seed`` itself is left out)
FIXED = (*FLOORS, "n_params", "steps", "warmup_steps", "n_train", "n_val", "test_n_puzzles", "test_n_blanks")
LEAD = ("n", "finding", "ci", "vs", "n_params", "still_improving", "note")  # after the metric and its CI


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, compared, state_rows, write_ablations
    from studies.report import bar_plot, curves_plot, replicate_summary, write_table

    p, rows = ctx.params, cell_rows(ctx)
    keys = list(next(iter(ctx.cells.values()))["params"])
    metric, descending, replicate = p["report_metric"], p["report_goal"] == "max", p["report_replicates"]
    better = {metric: p["report_goal"]}  # the .tex tables' bold best, whatever the metric's name
    numeric = list(  # every numeric metric any cell has, in first-seen order
        dict.fromkeys(
            k
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in (*keys, "seed")
        )
    )
    unfinished = state_rows(ctx)  # each cell that did not finish, with its state, after the ranked ones
    write_table(
        [{k: v for k, v in r.items() if k != "curve"} for r in rows] + unfinished,
        ctx.out / "table",
        sort_by=metric,
        first=("cell", "state"),
        descending=descending,
        better=better,
    )
    summary = replicate_summary(rows, keys, replicate, numeric, fixed=FIXED)
    summary = compared(ctx, summary, rows, keys, replicate, metric)
    table = write_table(
        summary + unfinished,
        ctx.out / "summary",
        sort_by=metric,
        first=("cell", "state", metric, *(f"{metric}_{s}" for s in ("sd", "diff", "diff_lo", "diff_hi")), *LEAD),
        descending=descending,
        better=better,
    )
    write_ablations(ctx, rows, summary, replicate, metric, goal=p["report_goal"])
    bar_plot(
        summary,
        metric,
        ctx.out / f"{metric}.png",
        title=f"{ctx.study}: {metric} (mean ± s.d.)",
        floors={f: rows[0][f] for f in FLOORS if rows[0].get(f) is not None},
        best_first=descending,
    )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    best = table.row(0, named=True)
    return {"cells": len(rows), "best": best["cell"], f"best_{metric}": best[metric], "best_n": best["n"]}
