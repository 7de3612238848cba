"""report: cells ranked by a metric (mean ± s.d. over seeds, with n) as tables (markdown, CSV,
and LaTeX with the best value in bold by ``report_goal``) and a bar chart, each row's
difference from a reference cell with its 95 % CI, and each factor against the base cell
(``ablations``).

``report_goal`` says which way is better: max (accuracy) or min (ε-MSE, FID).
``report_reference`` names what the summary compares with: ``base`` or a named cell.
Every table carries the metric's floors beside it, and the bar chart draws them as lines: those
the evaluate stage reports (``chance``, ``candidate_uniform``) and, for an ε-MSE, predicting
ε̂ = 0 (``predict_zero_eps``: E[ε²] = 1 for the unit-Gaussian noise, lower is better).
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
FLOORS = ("chance", "candidate_uniform", "predict_zero_eps")  # metric names that are baselines, not results
# the same for every seed of a cell: averaged without an s.d. (``seed`` itself is left out)
FIXED = (*FLOORS, "n_params", "steps", "warmup_steps", "n_train", "n_val", "test_n_puzzles", "test_n_blanks")
LEAD = ("n", "finding", "ci", "vs", *FLOORS, "n_params", "still_improving", "note")  # after the metric and its CI


def floors_of(metric: str, row: dict) -> dict[str, float]:
    """The floors of ``metric`` a table shows beside it: the measured ones ``row`` (a cell's
    metrics) has, and for an ε-MSE the score of predicting ε̂ = 0."""
    out = {f: row[f] for f in FLOORS if row.get(f) is not None}
    if metric.endswith("eps_mse"):
        out["predict_zero_eps"] = 1.0  # E[ε²] of ε ~ N(0, I): the MSE of a denoiser that predicts nothing
    return out


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, compared, state_rows, write_ablations
    from studies.report import bar_plot, curves_plot, replicate_summary, write_table

    p, rows = ctx.params, cell_rows(ctx)
    metric = p["report_metric"]
    rows = [r | floors_of(metric, r) for r in rows]
    keys = list(next(iter(ctx.cells.values()))["params"])
    descending, replicate = p["report_goal"] == "max", p["report_replicates"]
    # the .tex tables' bold best, whatever the metric's name; a floor is no result to mark
    better = {metric: p["report_goal"], **dict.fromkeys(FLOORS)}
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
        first=("cell", "state", metric, *FLOORS),
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
        title=f"{ctx.study}: {metric}",
        floors=floors_of(metric, rows[0]),
        best_first=descending,
    )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    best = table.row(0, named=True)
    return {"cells": len(rows), "best": best["cell"], f"best_{metric}": best[metric], "best_n": best["n"]}
