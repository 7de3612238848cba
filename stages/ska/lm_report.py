"""report: the study's tables (markdown + CSV) and plots, from every cell's metrics.

``table`` has one row per cell; ``summary`` averages cells that differ only in the
replicate key (the training seed), with sample s.d. (missing for n = 1) and n, and is what
the plots show as error bars; each row's difference from ``report_reference`` (``base`` or a
named cell such as ``sdpa``) comes with its 95 % CI and ``finding``. ``ablations`` (table and
bars) sets each factor (a grid axis, or a named cell such as beta off or bf16) against the
base cell; the facet plot shows the interactions, with named cells (such as the SDPA
baseline) as reference lines in every panel.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="report",
    reads=("report_x", "report_hue", "report_metric", "report_replicates", "report_reference"),
    needs=("train", "evaluate"),
    code=("studies.report", "studies.stats"),
    gather=True,
)
# Only cells with attention=ska have these: every SKA branch switched off, and the gates.
SKA_ONLY_METRICS = ("test_perplexity_without_ska", "ska_gate_mean")
METRICS = (
    "test_perplexity",
    *SKA_ONLY_METRICS,
    "test_loss",
    "val_loss",
    "tokens_per_s",
    "train_loss",
    "train_s",
    "n_params",
    "peak_rss_mb",
)


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, reference_params, write_ablations
    from studies.report import compare_with_reference, curves_plot, facet_plot, replicate_summary, write_table

    p, rows = ctx.params, cell_rows(ctx)
    keys = list(next(iter(ctx.cells.values()))["params"])
    write_table(
        [{k: v for k, v in r.items() if k != "curve"} for r in rows],
        ctx.out / "table",
        sort_by=p["report_metric"],
        first=("cell",),
    )
    metric, replicate = p["report_metric"], p["report_replicates"]
    summary = replicate_summary(rows, keys, replicate, list(METRICS), fixed=("n_params",))
    reference = reference_params(ctx, p["report_reference"])
    summary = compare_with_reference(summary, rows, keys, replicate, metric, reference)
    lead = (
        *("cell", metric, f"{metric}_sd", f"{metric}_diff", f"{metric}_diff_lo", f"{metric}_diff_hi"),
        *("n", "finding", "ci", "vs", "n_params"),
    )
    table = write_table(summary, ctx.out / "summary", sort_by=metric, first=lead)
    factors = [k for k in keys if k != replicate]
    write_ablations(ctx, rows, summary, replicate, metric)
    facet_plot(
        summary,
        factors,
        x=p["report_x"],
        hue=p["report_hue"],
        metric=p["report_metric"],
        path=ctx.out / f"{p['report_metric']}_vs_{p['report_x']}.png",
        title=f"{ctx.study} (mean ± s.d. over {p['report_replicates']})",
    )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    best = table.row(0, named=True)
    return {
        "cells": len(rows),
        "best": best["cell"],
        f"best_{p['report_metric']}": best[p["report_metric"]],
        f"best_{p['report_metric']}_sd": best[f"{p['report_metric']}_sd"],
        "best_n": best["n"],
    }
