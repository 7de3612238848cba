"""W&B sweeps over a study's cells, executed through the pipeline.

``ablate sweep STUDY`` writes a grid sweep with one parameter, ``cell``, whose values are every
cell of the study: the grid cells and the named ones (the SDPA baselines among them), so the
sweep compares against its baselines. Its command is ``ablate cell STUDY --cell=NAME``, which
builds the cell's nodes through the store (so a sweep run and an engine build never compute
the same node twice) and logs the cell's params as the run's config and its per-cell stages'
metrics, each as ``STAGE/KEY`` (``metric_key``), offline unless WANDB_MODE says otherwise.

The sweep's metric is the study's ``report_metric`` as that command logs it: under the last
per-cell stage that declares it in its SPEC's ``metrics`` (the one that scores the test split:
reports give test), else under the last per-cell stage. Its goal is the
study's ``report_goal``, else the direction its report ranks the metric by.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.params import Cell, ParamsError, Study, axis_slug, format_value
from pipeline.paths import artifacts_root
from pipeline.plan import Plan
from pipeline.store import Store, read_meta

CELL = "cell"  # the sweep's one parameter: a cell's name
GOALS = {"min": "minimize", "max": "maximize"}  # report_goal → W&B's goal


def metric_key(stage: str, key: str) -> str:
    """How ``ablate cell`` names a stage's metric in W&B (and a sweep must name it)."""
    return f"{stage}/{key}"


def cell_stages(plan: Plan, study: Study, cell: str | None = None) -> list[str]:
    """The stages a cell builds and logs metrics of, in recipe order (the report is not one);
    given a cell, only those its variant uses (an SDPA cell has no bank)."""
    return [
        name
        for name, (_, spec) in plan.stages[study.kind].items()
        if not spec.gather and (cell is None or (study.name, cell, name) in plan.by_cell)
    ]


def target(
    plan: Plan, study: Study, metric: str | None, goal: str | None, goal_by_name: Callable[[str], str | None]
) -> tuple[str, str]:
    """(metric, goal) of the sweep: ``metric``/``goal`` as given, else from the study's params:
    ``report_goal`` for the report metric, else ``goal_by_name``, min/max from a metric's name
    (the rule the reports mark the best by)."""
    stages, where = cell_stages(plan, study), f"studies.{study.name}.params"
    if metric is None:
        key = study.params.get("report_metric")
        if key is None:
            raise ParamsError(
                f"{where}.report_metric",
                f"not set: {study.name}'s report ranks its cells by no single metric, so the sweep has none to "
                f"optimise; name one with --metric STAGE/KEY (a metric `ablate cell` logs, STAGE one of "
                f"{', '.join(stages)}) and --goal",
            )
        declaring = [s for s in stages if key in plan.stages[study.kind][s][1].metrics]
        metric = metric_key((declaring or stages)[-1], key)
    else:
        stage, _, key = metric.partition("/")
        if stage not in stages or not key:
            raise ParamsError(
                "--metric", f"{metric!r}: expected STAGE/KEY as `ablate cell` logs it, STAGE one of {', '.join(stages)}"
            )
    if goal is None:
        key = metric.partition("/")[2]
        declared = study.params.get("report_goal") if key == study.params.get("report_metric") else None
        direction = declared or goal_by_name(key)
        if direction not in GOALS:
            raise ParamsError("--goal", f"needed: {metric!r} is not the report_metric and its name gives no direction")
        goal = GOALS[direction]
    return metric, goal


def sweep_config(study: Study, metric: str, goal: str) -> dict[str, Any]:
    """A W&B grid sweep whose runs are every cell of ``study``, grid and named."""
    if CELL in study.axes:
        raise ParamsError(f"studies.{study.name}.grid.{CELL}", f"the sweep's own parameter is named {CELL!r}")
    return {
        "name": f"{study.name}-cells",
        "method": "grid",
        "metric": {"name": metric, "goal": goal},
        "parameters": {CELL: {"values": [c.name for c in study.cells]}},
        "command": ["${env}", "${interpreter}", "-m", "ablate", "cell", study.name, "${args}"],
    }


def _arg_value(axis: str, value: Any) -> Any:
    """How an axis value appears on the command line: as itself, or a mapping as its slug."""
    return axis_slug(axis, value) if isinstance(value, dict) else value


def cell_from_args(study: Study, args: dict[str, str]) -> Cell:
    """The cell ``args`` names (strings, as a command line gives them): ``{"cell": NAME}`` for any
    cell, grid or named, or a value for every grid axis."""
    if CELL in args and CELL not in study.axes:
        if len(args) > 1:
            raise ParamsError(f"studies.{study.name}", f"--{CELL} names the whole cell; drop the other flags")
        by_name = {c.name: c for c in study.cells}
        if args[CELL] in by_name:
            return by_name[args[CELL]]
        if args[CELL] in {c.name for c in study.excluded}:
            raise ParamsError(f"studies.{study.name}.exclude", f"cell {args[CELL]} is excluded")
        named = ", ".join(c.name for c in study.cells if c.named) or "none"
        raise ParamsError(f"studies.{study.name}", f"no cell {args[CELL]!r} (named cells: {named})")
    unknown = set(args) - set(study.axes)
    if unknown:
        raise ParamsError(
            f"studies.{study.name}.grid",
            f"not an axis: {', '.join(sorted(unknown))}; the axes are {', '.join(study.axes)} (or --{CELL}=NAME)",
        )
    missing = set(study.axes) - set(args)
    if missing:
        raise ParamsError(f"studies.{study.name}.grid", f"no value given for axis {', '.join(sorted(missing))}")
    for axis, values in study.axes.items():
        allowed = [format_value(_arg_value(axis, v)) for v in values]
        if args[axis] not in allowed:
            raise ParamsError(
                f"studies.{study.name}.grid.{axis}",
                f"{args[axis]!r} is not a value of this axis; allowed: {', '.join(allowed)}",
            )
    for cell in study.cells + study.excluded:
        if not cell.named and all(format_value(_arg_value(a, cell.coords[a])) == args[a] for a in study.axes):
            if cell in study.excluded:
                raise ParamsError(f"studies.{study.name}.exclude", f"cell {cell.name} is excluded")
            return cell
    raise ParamsError(f"studies.{study.name}.grid", f"no cell with {args}")


def cell_metrics(plan: Plan, study: str, cell: str, store: Store) -> dict[str, Any]:
    """Numeric metrics of every stored node of the cell, each under ``metric_key`` (``evaluate/test_perplexity``),
    read from the store: `ablate cell` builds into the store and leaves the workspaces to the engines."""
    out = {}
    for stage in cell_stages(plan, plan.studies[study], cell):
        meta = read_meta(store.entry(plan.by_cell[study, cell, stage].fingerprint)) or {}
        out |= {metric_key(stage, k): v for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))}
    return out


def log_to_wandb(study: Study, cell: Cell, metrics: dict[str, Any], figures: dict[str, Path] | None = None) -> str:
    """One W&B run per cell: config = the cell's params, summary = its metrics, and ``figures``
    (name → PNG file) as W&B images, copied into the run. Returns the run dir."""
    os.environ.setdefault("WANDB_MODE", "offline")  # no network here; `wandb sync` uploads later
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    directory = artifacts_root() / ".wandb"
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=f"ablate-{study.name}", name=cell.name, config=cell.params, dir=str(directory), reinit="finish_previous"
    )
    run.log(metrics | {name: wandb.Image(str(png)) for name, png in (figures or {}).items()})
    run_dir = run.dir
    run.finish()
    return run_dir
