"""report: the energy-based solver's SOLVER accuracy per cell (mean ± 95 % CI over seeds, n),
its difference from the reference cell with a 95 % CI and ``finding``, the Langevin gain
(langevin − z_zero blank-cell accuracy, paired by seed, with its CI), the floors (chance 1/9 and
candidate-uniform), trainable parameters, and the oracle decode in its own labelled columns.

``report_metric`` is the headline: a SOLVER mode's test blank or puzzle accuracy
(``SOLVER_METRICS``); an oracle_z metric is refused before anything runs (its latent is built
from the solution). Files: ``solver`` (the headline table), ``summary`` (every
metric), ``table`` (one row per cell), ``ablations`` (each factor against the base cell), each as
.md/.csv/.tex; bar chart with the floors, Langevin steps × chains plot, training curves.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SOLVER_METRICS = tuple(f"test_{mode}_{m}" for mode in ("langevin", "z_zero") for m in ("blank_acc", "puzzle_acc"))

SPEC = StageSpec(
    name="report",
    reads=("report_metric", "report_replicates", "report_reference"),
    needs=("train", "evaluate"),
    code=("studies.report", "studies.stats", "stages.common.report_rows"),
    gather=True,
    choices={"report_metric": SOLVER_METRICS},
)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(images=("{report_metric}.png", "train_curves.png"), bars=(("summary.csv", "cell", "{report_metric}"),))
FLOORS = ("chance", "candidate_uniform")
FIXED = (*FLOORS, "n_params", "steps", "n_test")  # the same for every seed of a cell: mean only
ORACLE_PREFIX = "test_oracle_z_"
ORACLE_LABEL = "ORACLE_not_solver_"  # how oracle columns are shown: never a solver accuracy


def langevin_gain(rows: list[dict], keys: list[str], replicate: str) -> dict[str, dict]:
    """Per replicate group: langevin − z_zero test blank accuracy, paired by seed, with its 95 % CI."""
    from studies.report import replicate_groups
    from studies.stats import difference_ci

    out = {}
    for label, members in replicate_groups(rows, keys, replicate).items():
        lang = {m[replicate]: m["test_langevin_blank_acc"] for m in members}
        zero = {m[replicate]: m["test_z_zero_blank_acc"] for m in members}
        out[label] = difference_ci(lang, zero)
    return out


def relabel_oracle(row: dict) -> dict:
    """Oracle columns renamed so no table can read them as a solver's accuracy."""
    return {(ORACLE_LABEL + k[len(ORACLE_PREFIX) :] if k.startswith(ORACLE_PREFIX) else k): v for k, v in row.items()}


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, reference_params, write_ablations
    from studies.report import (
        bar_plot,
        compare_with_reference,
        curves_plot,
        line_plot,
        replicate_summary,
        write_table,
    )

    p, rows = ctx.params, cell_rows(ctx)
    keys = list(next(iter(ctx.cells.values()))["params"])
    replicate = p["report_replicates"]
    metric = p["report_metric"]
    # the headline is bold where best; the gain and the oracle (not a solver) never are
    better = {metric: "max", "langevin_gain": None} | {f"{ORACLE_LABEL}{m}": None for m in ("blank_acc", "puzzle_acc")}
    numeric = list(
        dict.fromkeys(
            k
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in (*keys, "seed")
        )
    )
    flat = [relabel_oracle({k: v for k, v in r.items() if k != "curve"}) for r in rows]
    write_table(flat, ctx.out / "table", sort_by=metric, first=("cell",), descending=True, better=better)
    summary = replicate_summary(rows, keys, replicate, numeric, fixed=FIXED)
    summary = compare_with_reference(
        summary, rows, keys, replicate, metric, reference_params(ctx, p["report_reference"])
    )
    gains = langevin_gain(rows, keys, replicate)
    for row in summary:
        g = gains[row["cell"]]
        row |= {"langevin_gain": g["diff"], "langevin_gain_lo": g["lo"], "langevin_gain_hi": g["hi"]}
    lead = (
        "cell",
        "n",
        metric,
        f"{metric}_sd",
        f"{metric}_diff",
        f"{metric}_diff_lo",
        f"{metric}_diff_hi",
        "finding",
        "vs",
        "langevin_gain",
        "langevin_gain_lo",
        "langevin_gain_hi",
        "test_langevin_puzzle_acc",
        "test_z_zero_blank_acc",
        "test_z_zero_puzzle_acc",
        "candidate_uniform",
        "chance",
        "n_params",
        "still_improving",
    )
    lead = tuple(dict.fromkeys(lead))  # the headline metric may be one of the others
    oracle = ("test_oracle_z_blank_acc", "test_oracle_z_puzzle_acc")  # its own labelled columns, last
    solver = [{k: r.get(k) for k in lead} | relabel_oracle({k: r.get(k) for k in oracle}) for r in summary]
    table = write_table(solver, ctx.out / "solver", sort_by=metric, first=lead, descending=True, better=better)
    write_table(
        [relabel_oracle(r) for r in summary],
        ctx.out / "summary",
        sort_by=metric,
        first=lead,
        descending=True,
        better=better,
    )
    write_ablations(ctx, rows, summary, replicate, metric, goal="max")
    bar_plot(
        summary,
        metric,
        ctx.out / f"{metric}.png",
        title=f"{ctx.study}: solver {metric}",
        floors={f: rows[0][f] for f in FLOORS},
    )
    sweep = [r for r in summary if "langevin_steps" in r and r["langevin_steps"] is not None]
    if len({(r["langevin_steps"], r.get("langevin_chains")) for r in sweep}) > 1:
        others = [k for k in keys if k not in (replicate, "langevin_steps", "langevin_chains")]
        line_plot(
            sweep,
            "langevin_steps",
            "test_langevin_blank_acc",
            ("langevin_chains", *others),
            ctx.out / "langevin_sweep.png",
            f"{ctx.study}: Langevin blank accuracy vs steps (mean over seeds)",
        )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    best = table.row(0, named=True)
    return {"cells": len(rows), "best": best["cell"], f"best_{metric}": best[metric], "best_n": best["n"]}
