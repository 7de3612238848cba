"""Shared by the report stages: one row per finished cell from its train and evaluate artifacts,
a state row per other cell, the reference a summary is compared with, and the one-factor-at-a-time
ablation table and bars."""

from __future__ import annotations

from pipeline.spec import Context
from stages.common.trained import load_history


def still_improving(metrics: dict) -> bool | None:
    """True when the kept (best-on-validation) state is the last step's: training had not
    levelled off, so more steps may still help. None where the train stage records no best."""
    if metrics.get("best_step") is None or metrics.get("steps") is None:
        return None
    return metrics["best_step"] >= metrics["steps"] - 1


def cell_rows(ctx: Context) -> list[dict]:
    """Per cell: its name, whether it is named, varying params, train and evaluate metrics,
    ``still_improving`` where the train stage keeps a best state, and its training curve
    (``curve``); nested metric values are dropped and a metric ``n`` becomes ``n_eval``."""
    rows = []
    for cell, info in finished(ctx).items():
        train = next(u for u in ctx.inputs("train") if cell in u.cells)
        evaluate = next(u for u in ctx.inputs("evaluate") if cell in u.cells)
        row = {"cell": cell, "named": info["named"], **info["params"], **train.metrics(), **evaluate.metrics()}
        row = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
        if "n" in row:  # an evaluate stage's example count; ``n`` is the summaries' replicate count
            row["n_eval"] = row.pop("n")
        flag = still_improving(row)
        if flag is not None:
            row["still_improving"] = flag
        row["curve"] = load_history(train.path)
        rows.append(row)
    return rows


def finished(ctx: Context) -> dict[str, dict]:
    """The cells whose nodes were all built (the runner gives every other cell a ``state``)."""
    return {c: info for c, info in ctx.cells.items() if "state" not in info}


def state_rows(ctx: Context) -> list[dict]:
    """A row per cell not finished: its name, params and ``state`` (``OOM (peak 61.2 GB)``,
    ``failed (exit 1: …)``, ``killed (signal 9)``, ``upstream failed: …``, ``pending``), so a
    report shows every cell of its study; none when all finished."""
    return [
        {"cell": c, "named": info["named"], **info["params"], "state": info["state"]}
        for c, info in ctx.cells.items()
        if "state" in info
    ]


def compared(ctx: Context, summary: list[dict], rows: list[dict], keys: list[str], replicate: str, metric: str):
    """``summary`` with each group's difference from ``report_reference`` (compare_with_reference);
    as it is when the reference cell did not finish (its state row says why, so nothing to compare)."""
    from studies.report import compare_with_reference

    reference = reference_params(ctx, ctx.params["report_reference"])
    try:
        return compare_with_reference(summary, rows, keys, replicate, metric, reference)
    except ValueError:
        if len(finished(ctx)) == len(ctx.cells):
            raise
        return summary


def reference_params(ctx: Context, reference: str) -> dict:
    """The params of the cell a summary is compared with: ``base`` (the study's base params)
    or the name of a named cell (such as ``sdpa``)."""
    if reference == "base":
        return ctx.base
    named = sorted(c for c, info in ctx.cells.items() if info["named"])
    if reference not in named:
        raise ValueError(
            f"studies.{ctx.study}.params.report_reference={reference!r}: use 'base' or a named cell of the"
            f" study ({', '.join(named) or 'none'})"
        )
    return ctx.cells[reference]["params"]


def write_ablations(
    ctx: Context, rows: list[dict], summary: list[dict], replicate: str, metric: str, goal: str | None = None
) -> None:
    """``ablations.{md,csv,tex,png}``: each factor against the base cell (see one_factor_rows),
    with the change's 95 % CI from the per-seed ``rows``; ``goal`` (min/max) marks the best
    ``metric`` in the .tex (default: by the metric's name, ``studies.report.better_of``)."""
    from studies.report import compare_with_reference, one_factor_bars, one_factor_rows, write_table

    keys = list(next(iter(ctx.cells.values()))["params"])
    factors = [k for k in keys if k != replicate]
    try:
        summary = compare_with_reference(summary, rows, keys, replicate, metric, ctx.base)
    except ValueError:  # no base cell among the cells: plain groups, no change column
        pass
    ablations = one_factor_rows(summary, ctx.base, factors, metric)
    if ablations:
        better = {metric: goal} if goal else None
        write_table(ablations, ctx.out / "ablations", sort_by="factor", first=("factor", "setting", "n"), better=better)
        one_factor_bars(ablations, metric, ctx.out / "ablations.png", ctx.study)
