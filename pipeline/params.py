"""params.yaml → validated studies. Every error names the key path and what is allowed.

Layout of one study::

    studies:
      ska_lm:
        kind: ska_lm            # optional: which stage recipe runs it (default: the name)
        params: {...}           # base values; the keys stages read, and their types
        grid:                   # cartesian product of axes
          minhash_k: [32, 64]                       # an axis named by a param key
          bank: [{window: 32, stride: 16}, ...]     # an axis whose values set several keys
        cells: {sdpa: {attention: sdpa}}            # extra named cells: overrides of params
        exclude: [{router_topk: 0, adapter_rank: 16}]  # drop grid cells matching all entries
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STUDY_KEYS = ("kind", "params", "grid", "cells", "exclude", "description")
SLUG_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class ParamsError(ValueError):
    """Invalid params.yaml: the message starts with the offending key path."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


def did_you_mean(word: str, options) -> str:
    """' (did you mean X?)' when a close match exists, or a single option contains the word
    ('seed' → 'train_seed'), else ''."""
    options = [str(o) for o in options]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close and word:
        close = [o for o in options if str(word) in o][:2]
        close = close if len(close) == 1 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Cell:
    """One ablation cell: a full assignment of the study's params."""

    name: str  # slug over all axes for grid cells, the given name for named cells
    params: dict[str, Any]
    coords: dict[str, Any]  # axis name → axis value (grid cells); {} for named cells
    named: bool = False


@dataclass(frozen=True)
class Study:
    name: str
    kind: str
    params: dict[str, Any]
    axes: dict[str, list[Any]]  # axis name → values (scalars, or mappings of param keys)
    cells: list[Cell] = field(default_factory=list)
    overridden: frozenset[str] = frozenset()  # param keys set by named cells
    excluded: list[Cell] = field(default_factory=list)  # grid cells removed by `exclude`

    @property
    def varying(self) -> frozenset[str]:
        """Param keys that differ between cells: set by an axis or a named cell."""
        return self.overridden.union(*(self.axis_keys(a) for a in self.axes))

    def axis_keys(self, axis: str) -> tuple[str, ...]:
        """Param keys an axis sets: itself, or the keys of its mapping values."""
        first = self.axes[axis][0]
        return tuple(first) if isinstance(first, dict) else (axis,)


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


def check_value(path: str, value: Any, base: Any, base_path: str = "") -> Any:
    """A grid or cell value must have the base value's type (an int is accepted for a float)."""
    if base is None or value is None:
        return value
    if isinstance(base, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(base):
        if isinstance(base, str) and isinstance(value, (int, float)) and float_hint(base):
            # the base is the mistake: YAML read a number as a string
            raise ParamsError(base_path or path, f"the string {base!r}, while {path} is {value!r}: {float_hint(base)}")
        hint = (
            f" ({float_hint(value)})"
            if isinstance(base, float) and isinstance(value, str) and float_hint(value)
            else ""
        )
        raise ParamsError(path, f"expected {_type_name(base)} like the base value {base!r}, got {value!r}{hint}")
    return value


NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def float_hint(text: str) -> str:
    """For a string that reads as a number: why YAML kept it a string and how to write the
    float ('1e-3' → '1.0e-3', '1.0e3' → '1.0e+3'); '' for any other string."""
    if not NUMBER.match(text.strip()):
        return ""
    mantissa, e, exponent = text.strip().lower().partition("e")
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    fixed = f"{float(mantissa)!r}{e}{exponent}"
    return f"YAML reads {text} as a string (a float needs a '.' and a signed exponent): write {fixed}"


def format_value(value: Any) -> str:
    """A value as it appears in slugs and paths (matches DVC's ${...} interpolation)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expect_mapping(path: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ParamsError(path, f"expected a mapping, got {_type_name(value)}")
    return value


def _check_key(path: str, key: str, params: dict) -> None:
    if key not in params:
        raise ParamsError(path, f"unknown param {key!r}{did_you_mean(key, params)}; known: {', '.join(sorted(params))}")


def _parse_axes(path: str, grid: dict, params: dict) -> dict[str, list]:
    """Check every axis: non-empty list, known keys, base types, no duplicate values."""
    axes: dict[str, list] = {}
    base = path.rpartition(".")[0] + ".params"  # where the base values are written
    for axis, values in grid.items():
        where = f"{path}.{axis}"
        if not isinstance(values, list):
            raise ParamsError(where, f"an axis is a list of values, got {_type_name(values)}")
        if not values:
            raise ParamsError(where, "empty axis: give at least one value (or remove the axis)")
        if isinstance(values[0], dict):
            keys = list(values[0])
            for i, v in enumerate(values):
                if not isinstance(v, dict) or list(v) != keys:
                    raise ParamsError(f"{where}[{i}]", f"every value of a mapping axis sets the same keys {keys}")
                for k in keys:
                    _check_key(f"{where}[{i}].{k}", k, params)
                    v[k] = check_value(f"{where}[{i}].{k}", v[k], params[k], f"{base}.{k}")
        else:
            _check_key(where, axis, params)
            values = [check_value(f"{where}[{i}]", v, params[axis], f"{base}.{axis}") for i, v in enumerate(values)]
        for i, v in enumerate(values):
            for x in v.values() if isinstance(v, dict) else [v]:
                if not set(format_value(x)) <= SLUG_SAFE:
                    raise ParamsError(
                        f"{where}[{i}]", f"{x!r} cannot appear in a path: use letters, digits, '_', '-', '.'"
                    )
        if len({format_value(v) if not isinstance(v, dict) else repr(sorted(v.items())) for v in values}) < len(values):
            raise ParamsError(where, "duplicate values")
        axes[axis] = values
    keys = [k for a, vs in axes.items() for k in (vs[0] if isinstance(vs[0], dict) else [a])]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ParamsError(path, f"param {sorted(dup)[0]!r} is set by two axes")
    return axes


def axis_slug(axis: str, value: Any) -> str:
    """Readable slug part of one axis value: key=value, joined with ',' for mappings."""
    items = value.items() if isinstance(value, dict) else [(axis, value)]
    return ",".join(f"{k}={format_value(v)}" for k, v in items)


def _grid_cells(study_path: str, params: dict, axes: dict, exclude: list[dict]) -> tuple[list[Cell], list[Cell]]:
    """(kept, excluded) grid cells."""
    cells, excluded, used = [], [], set()
    for combo in itertools.product(*axes.values()):
        coords = dict(zip(axes, combo, strict=False))
        full = dict(params)
        for axis, value in coords.items():
            full.update(value if isinstance(value, dict) else {axis: value})
        name = ",".join(axis_slug(a, v) for a, v in coords.items()) or "base"
        hits = [all(full.get(k) == v for k, v in rule.items()) for rule in exclude]
        used.update(i for i, hit in enumerate(hits) if hit)
        (excluded if any(hits) else cells).append(Cell(name=name, params=full, coords=coords))
    for i, rule in enumerate(exclude):
        if i not in used:  # a typo in a value, or an axis value since removed: it drops nothing
            raise ParamsError(f"{study_path}.exclude[{i}]", f"{rule} matches no cell of the grid")
    if not cells:
        raise ParamsError(f"{study_path}.exclude", "excludes every cell of the grid")
    return cells, excluded


def check_read(path: str, kind: str, params: dict, read: set[str]) -> None:
    """Every base key is read by a stage of the study's kind (else: a typo, or a stale key)."""
    for key in params:
        if key not in read:
            raise ParamsError(
                f"{path}.params.{key}", f"no stage of kind {kind!r} reads this key{did_you_mean(key, read)}"
            )


def parse_study(name: str, raw: Any, kinds: tuple[str, ...], reads: dict[str, set[str]] | None = None) -> Study:
    """Validate one study section and expand its cells. ``reads`` (kind → keys its stages
    read) checks the base keys first, so a typo there is named there, not where a grid axis
    or a cell uses the key spelled right."""
    path = f"studies.{name}"
    raw = _expect_mapping(path, raw)
    for key in raw:
        if key not in STUDY_KEYS:
            raise ParamsError(
                f"{path}.{key}", f"unknown key{did_you_mean(key, STUDY_KEYS)}; allowed: {', '.join(STUDY_KEYS)}"
            )
    if not set(str(name)) <= SLUG_SAFE:
        raise ParamsError(path, "study names use letters, digits, '_', '-' and '.' only")
    kind = raw.get("kind", name)
    if kind not in kinds:
        raise ParamsError(
            f"{path}.kind", f"unknown study kind {kind!r}{did_you_mean(kind, kinds)}; known: {', '.join(kinds)}"
        )
    params = dict(_expect_mapping(f"{path}.params", raw.get("params", {})))
    for key, value in params.items():
        if isinstance(value, (dict, list)):
            raise ParamsError(f"{path}.params.{key}", "param values are scalars (use a grid axis for a list)")
    if reads is not None:
        check_read(path, kind, params, reads[kind])
    axes = _parse_axes(f"{path}.grid", dict(_expect_mapping(f"{path}.grid", raw.get("grid") or {})), params)
    exclude = raw.get("exclude") or []
    if not isinstance(exclude, list):
        raise ParamsError(f"{path}.exclude", "expected a list of mappings")
    for i, rule in enumerate(exclude):
        for key in _expect_mapping(f"{path}.exclude[{i}]", rule):
            _check_key(f"{path}.exclude[{i}].{key}", key, params)
    cells, excluded = _grid_cells(path, params, axes, exclude)
    overridden: set[str] = set()
    named = _expect_mapping(f"{path}.cells", raw.get("cells") or {})
    for cell_name, overrides in named.items():
        where = f"{path}.cells.{cell_name}"
        if not set(str(cell_name)) <= SLUG_SAFE or "=" in str(cell_name):
            raise ParamsError(where, "cell names use letters, digits, '_', '-' and '.' only")
        if any(c.name == cell_name for c in cells):
            raise ParamsError(where, "duplicate cell name")
        full = dict(params)
        for key, value in _expect_mapping(where, overrides or {}).items():
            _check_key(f"{where}.{key}", key, params)
            full[key] = check_value(f"{where}.{key}", value, params[key], f"{path}.params.{key}")
            overridden.add(key)
        cells.append(Cell(name=str(cell_name), params=full, coords={}, named=True))
    return Study(name, kind, params, axes, cells, frozenset(overridden), excluded)


def _check_duplicate_keys(node: yaml.Node, path: str = "") -> None:
    """YAML silently keeps the last of two equal keys; a second cell of the same name is a bug."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            if name in seen:
                raise ParamsError(path or "(top level)", f"duplicate key {name!r} (line {key.start_mark.line + 1})")
            seen.add(name)
            _check_duplicate_keys(value, f"{path}.{name}" if path else name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}[{i}]")


def load(
    path: Path | str, kinds: tuple[str, ...], only: list[str] | None = None, reads: dict[str, set[str]] | None = None
) -> dict[str, Study]:
    """Read and validate a params file; ``only`` restricts to some studies (unknown names error);
    ``reads``: see parse_study."""
    path = Path(path)
    try:
        text = path.read_text()
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except FileNotFoundError:
        raise ParamsError(str(path), "file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(str(path), f"not valid YAML: {e}") from None
    raw = _expect_mapping("(top level)", raw or {})
    for key in raw:
        if key != "studies":
            raise ParamsError(key, f"unknown top-level key{did_you_mean(key, ['studies'])}; allowed: studies")
    studies_raw = _expect_mapping("studies", raw.get("studies") or {})
    for name in only or []:
        if name not in studies_raw:
            raise ParamsError(
                f"studies.{name}", f"unknown study{did_you_mean(name, studies_raw)}; defined: {', '.join(studies_raw)}"
            )
    return {n: parse_study(n, s, kinds, reads) for n, s in studies_raw.items() if not only or n in only}
