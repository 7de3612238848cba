"""A study's values against what its stages declare, before any node is planned or run.

A stage's SPEC says which keys it reads, and for some of them the allowed ``choices``,
``types``, ``ranges``, cross-key ``checks`` and what a value ``refers`` to (pipeline.spec).
Each cell's values are checked here, so a mistake stops ``ablate check``, ``snakemake -n`` and
``dvc repro`` with the key path where the bad value was written and what is allowed, instead
of failing inside a stage (or, for a report, after every cell has trained).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from pipeline.params import Cell, ParamsError, Study, check_read, did_you_mean, float_hint
from pipeline.spec import StageSpec, parse_range


def value_path(study: Study, cell: Cell | None, key: str) -> str:
    """Where in params.yaml a cell's value of ``key`` was set (for error messages): a named
    cell's own override, a grid cell's axis, or else the base params (named cells start there)."""
    if cell is not None and cell.named:
        if key in study.overridden and cell.params[key] != study.params[key]:
            return f"studies.{study.name}.cells.{cell.name}.{key}"
        return f"studies.{study.name}.params.{key}"
    for axis in study.axes:
        if key in study.axis_keys(axis):
            return f"studies.{study.name}.grid.{axis}"
    return f"studies.{study.name}.params.{key}"


def reads_of(stages: dict[str, tuple[str, StageSpec]]) -> set[str]:
    """Every key some stage of a recipe reads."""
    return {k for _, spec in stages.values() for k in spec.reads}


def _type_ok(value: Any, allowed: tuple) -> bool:
    """float accepts an int; int and float reject a bool; ``None`` in ``allowed`` allows null."""
    if value is None:
        return None in allowed
    if isinstance(value, bool):
        return bool in allowed
    return any(t is not None and (isinstance(value, t) or (t is float and isinstance(value, int))) for t in allowed)


def _type_problem(value: Any, allowed: tuple) -> str:
    names = " or ".join("null" if t is None else t.__name__ for t in allowed)
    if isinstance(value, str) and float in allowed and float_hint(value):
        return f"expected {names}, got the string {value!r} ({float_hint(value)})"
    what = "the string" if isinstance(value, str) else type(value).__name__
    return f"expected {names}, got {what} {value!r}"


def _targets(study: Study, stages: dict[str, tuple[str, StageSpec]], kind: str) -> list[str]:
    """What a ``refers`` value may name: the varying keys (any param of a one-cell study, whose
    plot has one point whatever it is keyed by), the cells, or the declared metrics."""
    if kind == "axis":
        return sorted(study.varying or study.params)
    if kind == "param":
        return sorted(study.params)
    if kind == "cell":
        return ["base", *(c.name for c in study.cells if c.named)]
    return sorted({m for _, spec in stages.values() for m in spec.metrics})


def check_study(study: Study, stages: dict[str, tuple[str, StageSpec]]) -> None:
    """Every read key exists, every param is read by some stage, and each cell's values keep
    their stage's ``choices``, ``types``, ``ranges``, ``checks`` and ``refers``."""
    check_read(f"studies.{study.name}", study.kind, study.params, reads_of(stages))
    for name, (_, spec) in stages.items():
        for key in spec.reads:
            if key not in study.params:
                raise ParamsError(f"studies.{study.name}.params.{key}", f"missing: stage {name!r} reads it")
    # types first, over every stage: a range or check compares values of the right type only
    for _, spec in stages.values():
        for key, allowed in spec.types.items():
            allowed = allowed if isinstance(allowed, tuple) else (allowed,)
            for cell, value in _values(study, key):
                if not _type_ok(value, allowed):
                    raise ParamsError(value_path(study, cell, key), _type_problem(value, allowed))
    for _, spec in stages.values():
        _check_spec(study, stages, spec)


def _values(study: Study, key: str) -> Iterable[tuple[Cell, Any]]:
    """(cell, value of ``key``) per distinct value path: the base value is checked once."""
    seen = set()
    for cell in study.cells:
        where = (value_path(study, cell, key), repr(cell.params[key]))
        if where not in seen:
            seen.add(where)
            yield cell, cell.params[key]


def _check_spec(study: Study, stages: dict[str, tuple[str, StageSpec]], spec: StageSpec) -> None:
    for key, allowed in spec.choices.items():
        for cell, value in _values(study, key):
            if value not in allowed:
                raise ParamsError(
                    value_path(study, cell, key),
                    f"{value!r} is not allowed; choose one of {', '.join(map(str, allowed))}",
                )
    for key, text in spec.ranges.items():
        inside = parse_range(text)
        for cell, value in _values(study, key):
            if value is not None and not inside(value):
                raise ParamsError(value_path(study, cell, key), f"{value!r} is out of range; allowed: {text}")
    for rule, predicate in spec.checks.items():
        keys = list(inspect.signature(predicate).parameters)
        for cell in study.cells:
            args = {k: cell.params[k] for k in keys}
            if any(v is None for v in args.values()) or predicate(**args):
                continue
            # the first key set by the cell or an axis is where the fix most likely belongs
            paths = [value_path(study, cell, k) for k in keys]
            where = next((p for p in paths if ".params." not in p), paths[0])
            values = ", ".join(f"{k}={v!r}" for k, v in args.items())
            in_cell = f" in cell {cell.name!r}" if ".params." not in where else ""
            raise ParamsError(where, f"{values}{in_cell} breaks the rule: {rule}")
    for key, kind in spec.refers.items():
        targets = _targets(study, stages, kind)
        if kind == "metric" and not targets:
            continue  # no stage of this recipe declares its metrics yet
        for cell, value in _values(study, key):
            if value not in targets:
                what = {
                    "axis": "a key that varies between cells",
                    "param": "a key of the study's params",
                    "cell": "'base' or a named cell",
                    "metric": "a metric the study's stages return",
                }[kind]
                # a param is most likely meant to be one that varies: suggest and list those first
                likely = sorted(study.varying) if kind == "param" else targets
                hint = did_you_mean(value, likely) or did_you_mean(value, targets)
                listed = (
                    f"keys that vary: {', '.join(likely)}" if kind == "param" else f"choose one of {', '.join(targets)}"
                )
                raise ParamsError(value_path(study, cell, key), f"{value!r} is not {what}{hint}; {listed}")
