"""Cells → stage nodes. A node is one stage applied to the projection of a cell's params.

Cells that project identically onto a stage (and its upstream) share that node, so two
cells differing only in training params share one tokenization and one bank cache.

Workspace paths are readable and predictable from the grid alone, which is what lets
``dvc.yaml`` template them from params.yaml: a stage touched by a grid axis gets the
slug of those axes' values (``minhash_k=32,window=32,stride=16``); a named cell gets its
name wherever a grid axis or a named-cell override reaches; everything else is ``base``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import params as params_mod
from pipeline import project, record
from pipeline.codehash import code_digests
from pipeline.fingerprint import file_digest, node_fingerprint
from pipeline.params import Cell, ParamsError, Study, axis_slug, did_you_mean
from pipeline.paths import fingerprint_path, workspace_path
from pipeline.spec import StageSpec
from pipeline.store import read_meta
from pipeline.validate import check_study, reads_of

BASE = "base"
EXCLUDED = "excluded"  # the fingerprint file of a slug no node has


@dataclass(frozen=True)
class Node:
    study: str
    stage: str
    slug: str
    module: str
    spec: StageSpec
    params: dict[str, Any]
    upstream: tuple[tuple[str, str], ...]  # (stage, slug) within the same study
    parts: dict[str, Any]  # everything the fingerprint hashes, recorded in meta.json
    fingerprint: str
    cells: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.study}/{self.stage}/{self.slug}"

    def workspace(self, root: Path | None = None) -> Path:
        return workspace_path(self.study, self.stage, self.slug, self.spec.gather, root)

    def fingerprint_file(self, root: Path | None = None) -> Path:
        return fingerprint_path(self.study, self.stage, self.slug, root)


def load_recipes(recipes: dict[str, tuple[str, ...]]) -> dict[str, dict[str, tuple[str, StageSpec]]]:
    """kind → stage name → (module, SPEC), importing only the light stage modules."""
    out: dict[str, dict[str, tuple[str, StageSpec]]] = {}
    for kind, modules in recipes.items():
        stages: dict[str, tuple[str, StageSpec]] = {}
        for module in modules:
            spec = importlib.import_module(module).SPEC
            missing = [n for n in spec.needs if n not in stages]
            if missing:
                raise ValueError(f"recipe {kind}: stage {spec.name} needs {missing} declared earlier")
            stages[spec.name] = (module, spec)
            seen = set(spec.reads).union(*(stages[n][1].reads for n in _ancestors(stages, spec.name)))
            for need, predicate in spec.needs_on.items():
                unread = set(inspect.signature(predicate).parameters) - seen
                if unread:
                    raise ValueError(
                        f"recipe {kind}: stage {spec.name} needs_on[{need!r}] names keys neither it nor its"
                        f" upstream reads: {sorted(unread)}"
                    )
        for name, (_, spec) in stages.items():
            if spec.gather != (name == "report"):
                raise ValueError(f"recipe {kind}: the gathering stage, and only it, is named 'report'")
        out[kind] = stages
    return out


def _ancestors(stages: dict[str, tuple[str, StageSpec]], name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or not."""
    out: set[str] = set()
    for n in stages[name][1].needs:
        out |= {n} | _ancestors(stages, n)
    return out


def cell_stages(stages: dict[str, tuple[str, StageSpec]], params: dict[str, Any]) -> set[str]:
    """The cell stages a cell of these params has a node of: a leaf (needed by no cell stage), or a
    stage some stage of the cell needs under the cell's values (``needs_on``), so an SDPA cell has no bank."""
    has: set[str] = set()
    for name in reversed(stages):
        users = [spec for _, spec in stages.values() if not spec.gather and name in spec.needs]
        if not users or any(spec.name in has and name in spec.needs_for(params) for spec in users):
            has.add(name)
    return {n for n in has if not stages[n][1].gather}


class Plan:
    """All nodes of all studies, keyed by (study, stage, slug)."""

    def __init__(self, studies: dict[str, Study], recipes: dict[str, tuple[str, ...]], stamp: str | None = None):
        self.studies = studies
        self.root = project.root()
        self.stamp = stamp  # of the files this plan was made from (pipeline.record); None: write no records
        self.input_stats: dict[str, list[int]] = {}  # external input → [size, mtime_ns] before hashing it
        self.stages = load_recipes({s.kind: recipes[s.kind] for s in studies.values()})
        self.nodes: dict[tuple[str, str, str], Node] = {}
        self.by_cell: dict[tuple[str, str, str], Node] = {}  # (study, cell, stage) → node
        self._code: dict[str, dict[str, str]] = {}  # stage module → code digests
        # slugs DVC's matrix or foreach asks for that no node has: excluded cells, stages a cell's variant skips
        self.excluded: set[tuple[str, str, str]] = set()
        self._cells: dict[tuple[str, str, str], list[str]] = {}  # node key → its cells, while planning
        for study in studies.values():
            check_study(study, self.stages[study.kind])
            self._plan_study(study)
        # Cells are collected in lists and frozen once: extending a tuple per cell is quadratic.
        for key, node in self.nodes.items():
            object.__setattr__(node, "cells", tuple(self._cells[key]))
        del self._cells

    def _code_of(self, module: str, spec: StageSpec) -> dict[str, str]:
        if module not in self._code:
            self._code[module] = code_digests((module, *spec.code), self.root)
        return self._code[module]

    def _effective_reads(self, stages: dict[str, tuple[str, StageSpec]]) -> dict[str, set[str]]:
        eff: dict[str, set[str]] = {}
        for name, (_, spec) in stages.items():
            eff[name] = set(spec.reads).union(*(eff[n] for n in spec.needs))
        return eff

    def _slug(self, cell: Cell, per_cell: bool, axes: list[str]) -> str:
        """``axes``: the study's axes whose keys the stage (or its upstream) reads."""
        if not per_cell:
            return BASE
        if cell.named:
            return cell.name
        return ",".join([axis_slug(a, cell.coords[a]) for a in axes]) or BASE

    def _plan_study(self, study: Study) -> None:
        stages = self.stages[study.kind]
        eff = self._effective_reads(stages)
        has = {c.name: cell_stages(stages, c.params) for c in study.cells}
        for name, (module, spec) in stages.items():
            if spec.gather:
                self._plan_gather(study, name, module, spec)
                continue
            per_cell = bool(eff[name] & study.varying)
            axes = [a for a in study.axes if eff[name] & set(study.axis_keys(a))]
            unused = []  # cells whose variant uses no node of this stage
            for cell in study.cells:
                slug = self._slug(cell, per_cell, axes)
                if name not in has[cell.name]:
                    unused.append(cell)
                    continue
                upstream = tuple((n, self.by_cell[study.name, cell.name, n].slug) for n in spec.needs_for(cell.params))
                node = self._make(study, name, slug, module, spec, spec.applied(cell.params), upstream, cell.name)
                self.by_cell[study.name, cell.name, name] = node
            for cell in study.excluded + unused:
                key = (study.name, name, self._slug(cell, per_cell, axes))
                if key not in self.nodes:
                    self.excluded.add(key)

    def _plan_gather(self, study: Study, name: str, module: str, spec: StageSpec) -> None:
        upstream = tuple(
            sorted(
                {
                    (n, self.by_cell[study.name, c.name, n].slug)
                    for n in spec.needs
                    for c in study.cells
                    if (study.name, c.name, n) in self.by_cell
                }
            )
        )
        table = {}
        for c in study.cells:  # a key the cell's variant does not use (an SDPA cell's gamma) is None
            used = set(spec.reads).union(*(n.params for n in self._nodes_of(study, c.name)))
            values = {k: c.params[k] if k in used else None for k in sorted(study.varying)}
            table[c.name] = {"named": c.named, "params": values}
        # the base params of the varying keys: which cell is the reference, for one-factor plots
        base = {k: study.params[k] for k in sorted(study.varying)}
        projected = {k: study.params[k] for k in spec.reads}
        gathered = {"cells": table, "base": base}
        node = self._make(study, name, BASE, module, spec, projected, upstream, *table, gathered=gathered)
        for cell in study.cells:
            self.by_cell[study.name, cell.name, name] = node

    def _nodes_of(self, study: Study, cell: str) -> list[Node]:
        """The cell's nodes planned so far."""
        return [n for name in self.stages[study.kind] if (n := self.by_cell.get((study.name, cell, name)))]

    def _make(self, study, name, slug, module, spec, projected, upstream, *cells, gathered=None) -> Node:
        key = (study.name, name, slug)
        old = self.nodes.get(key)
        if old is not None:
            if old.params != projected or old.upstream != upstream:
                raise ParamsError(f"studies.{study.name}", f"two cells map to {old.label} with different params")
            self._cells[key].extend(cells)
            return old
        # Upstream identity is its fingerprint, never its slug: a slug is a path name that
        # changes when an axis is added, while the artifact behind it does not.
        up_fp: dict[str, Any] = {}
        for s, u in upstream:
            fp = self.nodes[study.name, s, u].fingerprint
            if spec.gather:  # a sorted set per stage, sorted once (not once per upstream node)
                up_fp.setdefault(s, set()).add(fp)
            else:
                up_fp[s] = fp
        if spec.gather:
            up_fp = {s: sorted(fps) for s, fps in up_fp.items()}
        inputs = {}
        for p in spec.external(projected) if spec.external else []:
            self.input_stats[str(p)] = record.input_stat(p)
            inputs[str(p)] = file_digest(p)
        parts = {
            "stage": name,
            "version": spec.version,
            "params": projected,
            "upstream": up_fp,
            "code": self._code_of(module, spec),
            "inputs": inputs,
        }
        parts.update(gathered or {})
        node = Node(study.name, name, slug, module, spec, projected, upstream, parts, node_fingerprint(parts), ())
        self.nodes[key] = node
        self._cells[key] = list(cells)
        return node

    def node(self, study: str, stage: str, slug: str) -> Node:
        try:
            return self.nodes[study, stage, slug]
        except KeyError:
            known = [s for (st, sg, s) in self.nodes if st == study and sg == stage]
            raise KeyError(f"no node {study}/{stage}/{slug} in the plan{did_you_mean(slug, known)}") from None

    def upstream_nodes(self, node: Node) -> list[Node]:
        return [self.nodes[node.study, s, u] for s, u in node.upstream]

    def write_fingerprint_files(self, root: Path | None = None) -> int:
        """Write each node's fingerprint file only when its content changes, and every node's
        record for the engine's jobs (pipeline.record); returns how many fingerprints changed.
        A changed node whose workspace already holds its artifact (``dvc pull``) is adopted
        into the store here, where both engines pass before any job (pipeline.runner.adopt_pulled).
        An unchanged node whose workspace was given another fingerprint since is set aside (set_aside_strays)."""
        record.write_all(self, root)
        changed, unchanged = [], []
        for node in self.nodes.values():
            path = node.fingerprint_file(root)
            try:
                if path.read_text() == node.fingerprint:
                    unchanged.append(node)
                    continue
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(node.fingerprint)
            os.replace(tmp, path)
            changed.append(node)
        for study, stage, slug in self.excluded:  # DVC tracks the file its stanza depends on, built or not
            path = fingerprint_path(study, stage, slug, root)
            if not path.exists() or path.read_text() != EXCLUDED:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(EXCLUDED)
        if changed:
            from pipeline.runner import adopt_pulled  # the store's business: imported only when needed

            adopt_pulled(changed, root)
        set_aside_strays(unchanged, root)
        return len(changed)


def set_aside_strays(nodes: list[Node], root: Path | None = None) -> int:
    """Make the engines rebuild every node among ``nodes`` (whose fingerprint file did not change)
    whose workspace holds an artifact of another fingerprint, written behind their back (an older
    `ablate cell`, a copy, a `dvc checkout` of another commit); returns how many.

    Neither engine would see it: Snakemake reruns a job only when an input's content changes,
    never for a newer output, and the fingerprint file's content is right. So the stray meta.json
    goes (its artifact adopted into the store first when it verifies and the store lacks it):
    Snakemake then sees a missing output, DVC an output that differs from dvc.lock, and the job
    restores the plan's artifact from the store, or computes it.

    Only a meta.json put in place (its inode's ctime: linked, copied or renamed there) after the
    fingerprint file was last written counts: an older one is a workspace the engines have not
    rebuilt yet since the fingerprint changed (`snakemake -n`, an interrupted run), which they
    rerun anyway and which `ablate why` reads until then."""
    from pipeline.store import Store

    store, strays = Store(), []
    for node in nodes:
        ws = node.workspace(root)
        try:
            if (ws / "meta.json").stat().st_ctime_ns <= node.fingerprint_file(root).stat().st_mtime_ns:
                continue
        except FileNotFoundError:
            continue
        held = (read_meta(ws) or {}).get("fingerprint")
        if held in (None, node.fingerprint):
            continue
        try:
            if not store.get(held):
                store.require_writable()
                store.adopt(held, ws)
        except OSError:  # an unreachable store: the job says so, naming it
            pass
        (ws / "meta.json").unlink()
        strays.append(f"{node.label} held {held[:12]}")
    if strays:
        shown = "; ".join(strays[:3]) + (f"; and {len(strays) - 3} more" if len(strays) > 3 else "")
        print(
            f"[ablate] {len(strays)} workspace(s) held another fingerprint than the plan's ({shown}), "
            "written behind the engine's back: set aside (kept in the store), so their jobs restore the plan's",
            file=sys.stderr,
        )
    return len(strays)


def build(params_path: Path | str, recipes: dict[str, tuple[str, ...]], only: list[str] | None = None) -> Plan:
    """Validate params and plan every node."""
    # Stamped before anything is read, so an edit made while planning leaves the records
    # stale instead of stamping an old plan as current.
    stamp = record.stamp(project.root(), Path(params_path).resolve())
    reads = {kind: reads_of(stages) for kind, stages in load_recipes(recipes).items()}
    studies = params_mod.load(params_path, tuple(recipes), only, reads)
    return Plan(studies, recipes, stamp)
