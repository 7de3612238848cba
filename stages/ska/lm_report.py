"""report: the study's tables (markdown, CSV and LaTeX) and plots, from every cell's metrics.

``table`` has one row per cell; ``summary`` averages cells that differ only in the
replicate key (the training seed), with sample s.d. (missing for n = 1) and n, and is what
the plots show as error bars; each row's difference from ``report_reference`` (``base`` or a
named cell such as ``sdpa``) comes with its 95 % CI and ``finding``. ``ablations`` (table and
bars) sets each factor (a grid axis, or a named cell such as beta off or bf16) against the
base cell; the facet plot shows the interactions, with named cells (such as the SDPA
baseline) as reference lines in every panel.
``best_lr`` keeps, per architecture run at several learning rates, the lr whose mean
validation loss is lowest (chosen on val only), so architectures compare each at its best.
Every table carries ``n_params`` (trainable parameters) and the floor ``uniform_perplexity``
(the vocabulary size: the perplexity of a uniform guess over the tokens).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SPEC = StageSpec(
    name="report",
    reads=("report_x", "report_hue", "report_metric", "report_replicates", "report_reference"),
    needs=("train", "evaluate"),
    code=("studies.report", "studies.stats"),
    gather=True,
    refers={
        **dict.fromkeys(("report_x", "report_hue"), "axis"),
        "report_replicates": "param",  # one that does not vary (a single seed) leaves every cell n = 1
        "report_metric": "metric",
        "report_reference": "cell",
    },
)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(
    images=("{report_metric}_vs_{report_x}.png", "train_curves.png"), bars=(("summary.csv", "cell", "{report_metric}"),)
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
FLOOR = "uniform_perplexity"  # from the train stage's config (vocab_size), not from the metrics
NO_BEST = {FLOOR: None}  # a floor: never marked as the best perplexity


def best_lr_rows(summary: list[dict], factors: list[str], select: str = "val_loss") -> list[dict]:
    """Per group of summary rows differing only in ``lr`` (and tried at more than one), the row
    with the lowest mean ``select``, with ``lrs_tried``; [] when no group has two lrs. Grid rows
    count: the base corner is the ``ska`` group (replicate_groups), the ska lr cells' reference."""
    groups: dict[tuple, list[dict]] = {}
    for row in summary:
        groups.setdefault(tuple(row[k] for k in factors if k != "lr"), []).append(row)
    return [
        {**min(rows, key=lambda r: r[select]), "lrs_tried": ", ".join(f"{r['lr']:g}" for r in rows)}
        for rows in groups.values()
        if len({r["lr"] for r in rows}) > 1
    ]


def run(ctx: Context) -> dict:
    import json

    from stages.common.report_rows import cell_rows, compared, state_rows, write_ablations
    from studies.report import curves_plot, facet_plot, replicate_summary, write_table

    p, rows = ctx.params, cell_rows(ctx)
    for r in rows:  # the floor: a uniform guess over the vocabulary has perplexity = its size
        train = next(u for u in ctx.inputs("train") if r["cell"] in u.cells)
        r[FLOOR] = json.loads((train.path / "config.json").read_text())["vocab_size"]
    keys = list(next(iter(ctx.cells.values()))["params"])
    unfinished = state_rows(ctx)  # each cell that did not finish, with its state, after the ranked ones
    write_table(
        [{k: v for k, v in r.items() if k != "curve"} for r in rows] + unfinished,
        ctx.out / "table",
        sort_by=p["report_metric"],
        first=("cell", "state", p["report_metric"], FLOOR),
        better=NO_BEST,
    )
    metric, replicate = p["report_metric"], p["report_replicates"]
    summary = replicate_summary(rows, keys, replicate, [*METRICS, FLOOR], fixed=("n_params", FLOOR))
    summary = compared(ctx, summary, rows, keys, replicate, metric)
    lead = (
        *("cell", "state", metric, f"{metric}_sd", f"{metric}_diff", f"{metric}_diff_lo", f"{metric}_diff_hi"),
        *("n", "finding", "ci", "vs", FLOOR, "n_params"),
    )
    table = write_table(summary + unfinished, ctx.out / "summary", sort_by=metric, first=lead, better=NO_BEST)
    factors = [k for k in keys if k != replicate]
    write_ablations(ctx, rows, summary, replicate, metric)
    best_lr = best_lr_rows(summary, factors)
    if best_lr:
        write_table(best_lr, ctx.out / "best_lr", sort_by=metric, first=("cell", "lr", "lrs_tried", "n", "n_params"))
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
