"""The stage contract: what a stage reads, needs and runs, and what it is handed."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFERS = ("axis", "param", "cell", "metric")
_RANGE = re.compile(
    r"^\s*(?:(?P<op>>=|<=|>|<)\s*(?P<bound>\S+)|(?P<lo>[\[(])\s*(?P<a>[^,]+),\s*(?P<b>[^\])]+)(?P<hi>[\])]))\s*$"
)


def parse_range(text: str) -> Callable[[float], bool]:
    """The test a ``ranges`` entry stands for: "> 0", ">= 1", "< 1", "<= 1", "[0, 1)", "(0, 1]"..."""
    m = _RANGE.match(text)
    if not m:
        raise ValueError(f"range {text!r}: write '> x', '>= x', '< x', '<= x' or an interval like '[0, 1)'")
    if m["op"]:
        bound, op = float(m["bound"]), m["op"]
        return {
            ">": lambda v: v > bound,
            ">=": lambda v: v >= bound,
            "<": lambda v: v < bound,
            "<=": lambda v: v <= bound,
        }[op]
    a, b, closed_lo, closed_hi = float(m["a"]), float(m["b"]), m["lo"] == "[", m["hi"] == "]"
    return lambda v: (a <= v if closed_lo else a < v) and (v <= b if closed_hi else v < b)


@dataclass(frozen=True)
class StageSpec:
    """Declared once per stage module; the planner reads it without importing torch.

    name      stage name, unique within a study recipe (also the Snakemake rule name)
    reads     param keys the stage sees; its fingerprint hashes exactly these
    needs     upstream stage names (one node each, or every cell's node if ``gather``)
    code      modules the stage's computation lives in (project imports are followed)
    version   bump when the output format changes without a code change
    choices   allowed values of some read keys, checked before anything runs
    gather    True for study-level stages (reports) that read every cell's upstream node
    external  param → files hashed into the fingerprint (e.g. a local dataset file)
    threads   CPU threads the stage wants (Snakemake ``threads``)
    gpus      GPUs it computes on (Snakemake ``resources: gpu``; the runner pins that many devices):
              an int, or a function of the node's params for a stage whose params pick the device

    Validation, checked by ``ablate check`` and whenever a plan is built (pipeline.validate):
    types     key → type or tuple of types (``None`` in it: null allowed); float accepts an int
    ranges    key → "> 0", ">= 1", "<= 1" or an interval "[0, 1)" the value must lie in
    checks    what must hold → predicate whose argument names are the read keys it relates,
              e.g. {"d_model is a multiple of n_heads": lambda d_model, n_heads: d_model % n_heads == 0};
              skipped when one of those keys is null
    refers    key → what its value names: "axis" (a key that varies between cells), "param" (a key
              of the study's params), "cell" ('base' or a named cell) or "metric" (one the
              study's stages declare in ``metrics``)
    metrics   metric names the stage returns that a report may be told to rank by

    Variants (an SDPA cell of an SKA study uses neither SKA's keys nor its bank):
    applies   read key → predicate whose argument names are other (unconditional) read keys, true
              for the cells whose variant uses the key, e.g. {"gamma": lambda attention: attention == "ska"};
              elsewhere the key is left out of the node's params, so its fingerprint, `ablate why`
              and its workspace meta never see it, and editing it rebuilds nothing there
    needs_on  needed stage → predicate over keys this stage or its upstream reads, true for the cells
              that use that input; elsewhere the edge is dropped, and a stage that no stage of a cell
              needs (and that is no leaf) gets no node for that cell
    """

    name: str
    reads: tuple[str, ...]
    needs: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    version: int = 1
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    gather: bool = False
    external: Callable[[Mapping[str, Any]], list[Path]] | None = None
    threads: int = 1
    gpus: int | Callable[[Mapping[str, Any]], int] = 0
    types: Mapping[str, type | tuple[type | None, ...]] = field(default_factory=dict)
    ranges: Mapping[str, str] = field(default_factory=dict)
    checks: Mapping[str, Callable[..., bool]] = field(default_factory=dict)
    refers: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    applies: Mapping[str, Callable[..., bool]] = field(default_factory=dict)
    needs_on: Mapping[str, Callable[..., bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, keys in (
            ("choices", self.choices),
            ("types", self.types),
            ("ranges", self.ranges),
            ("refers", self.refers),
            ("applies", self.applies),
            *((f"check {m!r}", inspect.signature(f).parameters) for m, f in self.checks.items()),
            *((f"applies[{k!r}]", inspect.signature(f).parameters) for k, f in self.applies.items()),
        ):
            unknown = set(keys) - set(self.reads)
            if unknown:
                raise ValueError(f"stage {self.name}: {what} names keys it does not read: {sorted(unknown)}")
        chained = {k: sorted(set(inspect.signature(f).parameters) & set(self.applies)) for k, f in self.applies.items()}
        if any(chained.values()):
            chained = {k: v for k, v in chained.items() if v}
            raise ValueError(f"stage {self.name}: applies conditions on keys that are conditional too: {chained}")
        unknown = set(self.needs_on) - set(self.needs)
        if unknown or (self.gather and self.needs_on):
            what = f"names stages it does not need: {sorted(unknown)}" if unknown else "is for cell stages, not reports"
            raise ValueError(f"stage {self.name}: needs_on {what}")
        for text in self.ranges.values():
            parse_range(text)  # a malformed range is the stage author's error, raised at import
        bad = {k: v for k, v in self.refers.items() if v not in REFERS}
        if bad:
            raise ValueError(f"stage {self.name}: refers {bad}; each value is one of {', '.join(REFERS)}")
        if not callable(self.gpus) and not (isinstance(self.gpus, int) and self.gpus >= 0):
            raise ValueError(f"stage {self.name}: gpus={self.gpus!r}; expected an int >= 0 or a function of params")

    def applied(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The reads that apply to a cell of these (full) params, with its values: the node's params."""
        return {k: params[k] for k in self.reads if k not in self.applies or _holds(self.applies[k], params)}

    def needs_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The upstream stages a cell of these (full) params uses."""
        return tuple(n for n in self.needs if n not in self.needs_on or _holds(self.needs_on[n], params))

    def gpus_for(self, params: Mapping[str, Any]) -> int:
        """GPUs one node of this stage needs, given its projected params."""
        n = self.gpus(Params(params, self.name)) if callable(self.gpus) else self.gpus
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"stage {self.name}: gpus returned {n!r} for these params; expected an int >= 0")
        return n


@functools.cache
def _arguments(predicate: Callable[..., bool]) -> tuple[str, ...]:
    return tuple(inspect.signature(predicate).parameters)  # once per predicate: planning asks per cell


def _holds(predicate: Callable[..., bool], params: Mapping[str, Any]) -> bool:
    return bool(predicate(**{k: params[k] for k in _arguments(predicate)}))


class Params(Mapping[str, Any]):
    """The projected params of a node: reading an undeclared key is an error, not a default."""

    def __init__(self, values: Mapping[str, Any], stage: str):
        self._values, self._stage = dict(values), stage

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"stage {self._stage!r} reads {key!r} without declaring it in SPEC.reads") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Upstream:
    """One input artifact: its stage, the cell(s) it serves (all of them for a gathering stage;
    for any other, those of the node being built), and where its files are."""

    stage: str
    slug: str
    path: Path
    cells: tuple[str, ...]

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text()).get("metrics", {})


@dataclass(frozen=True)
class Context:
    """What ``run(ctx)`` gets: projected params, an empty output dir, upstream artifacts, and the
    device to compute on (a stage that builds a model moves it and its batches there)."""

    params: Params
    out: Path
    upstream: tuple[Upstream, ...]
    study: str
    threads: int = 1
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # gathering stages: cell → {named, params}
    base: dict[str, Any] = field(default_factory=dict)  # gathering stages: base value of each varying key
    device: str = "cpu"  # torch device of models and batches (pipeline.device; never a param)

    def input(self, stage: str) -> Path:
        """Directory of the single upstream node of ``stage``."""
        found = [u for u in self.upstream if u.stage == stage]
        if len(found) != 1:
            raise KeyError(f"expected one upstream {stage!r} node, found {len(found)}")
        return found[0].path

    def inputs(self, stage: str) -> list[Upstream]:
        """Every upstream node of ``stage`` (gathering stages)."""
        return [u for u in self.upstream if u.stage == stage]
