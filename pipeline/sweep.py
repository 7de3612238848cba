"""W&B sweeps over a study's grid, executed through the pipeline.

``ablate sweep STUDY`` writes a grid sweep whose parameters are the study's axes (a mapping
axis travels as its slug string, ``window=32,stride=16``) and whose command is
``ablate cell STUDY --axis=value ...``. That command builds the cell's nodes through the
store (so a sweep run and an engine build never compute the same node twice) and logs the
cell's metrics to a W&B run, offline unless WANDB_MODE says otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from pipeline.params import Cell, ParamsError, Study, axis_slug, format_value
from pipeline.paths import artifacts_root
from pipeline.plan import Plan


def _arg_value(axis: str, value: Any) -> Any:
    """How an axis value appears in the sweep: as itself, or a mapping as its slug."""
    return axis_slug(axis, value) if isinstance(value, dict) else value


def sweep_config(study: Study, metric: str, goal: str) -> dict[str, Any]:
    """A W&B grid sweep over ``study``'s axes (named cells are not on the grid)."""
    if not study.axes:
        raise ParamsError(f"studies.{study.name}.grid", "a sweep needs at least one grid axis")
    return {
        "name": f"{study.name}-grid",
        "method": "grid",
        "metric": {"name": metric, "goal": goal},
        "parameters": {a: {"values": [_arg_value(a, v) for v in vs]} for a, vs in study.axes.items()},
        "command": ["${env}", "${interpreter}", "-m", "ablate", "cell", study.name, "${args}"],
    }


def cell_from_args(study: Study, args: dict[str, str]) -> Cell:
    """The grid cell whose axis values print as ``args`` (strings, as a command line gives them)."""
    unknown = set(args) - set(study.axes)
    if unknown:
        raise ParamsError(f"studies.{study.name}.grid", f"not an axis: {', '.join(sorted(unknown))}")
    missing = set(study.axes) - set(args)
    if missing:
        raise ParamsError(f"studies.{study.name}.grid", f"no value given for axis {', '.join(sorted(missing))}")
    for cell in study.cells + study.excluded:
        if not cell.named and all(format_value(_arg_value(a, cell.coords[a])) == args[a] for a in study.axes):
            if cell in study.excluded:
                raise ParamsError(f"studies.{study.name}.exclude", f"cell {cell.name} is excluded")
            return cell
    raise ParamsError(f"studies.{study.name}.grid", f"no cell with {args}")


def cell_metrics(plan: Plan, study: str, cell: str) -> dict[str, Any]:
    """Metrics of every built node of the cell, prefixed by stage (``evaluate/perplexity``)."""
    from pipeline.store import read_meta

    out = {}
    for stage in (s for s, (_, sp) in plan.stages[plan.studies[study].kind].items() if not sp.gather):
        meta = read_meta(plan.by_cell[study, cell, stage].workspace()) or {}
        out |= {f"{stage}/{k}": v for k, v in meta.get("metrics", {}).items() if isinstance(v, (int, float))}
    return out


def log_to_wandb(study: Study, cell: Cell, metrics: dict[str, Any]) -> str:
    """One W&B run per cell: config = the cell's params, summary = its metrics. Returns the run dir."""
    os.environ.setdefault("WANDB_MODE", "offline")  # no network here; `wandb sync` uploads later
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    directory = artifacts_root() / ".wandb"
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=f"ablate-{study.name}", name=cell.name, config=cell.params, dir=str(directory), reinit="finish_previous"
    )
    run.log(metrics)
    run_dir = run.dir
    run.finish()
    return run_dir
