"""Per-node records: what one engine job needs to build its node, without re-planning.

An engine plans once per run (the Snakefile parse, or dvc.yaml's ``fingerprints`` stage)
and writes, beside each node's fingerprint file, a JSON record: the node's fingerprint,
params, fingerprint parts, and its upstream nodes' fingerprints. A job
(``python -m stages …``) then reads its own record instead of planning the whole study,
so its cost does not grow with the study.

A record is trusted only while it is current. It carries a *stamp*: a digest of the
bytes of the params file, of every module of the followed packages (``stages``,
``studies``) and of the pipeline itself, and the size and mtime of every external input
the node or its ancestors hash. Anything the plan's fingerprint could depend on changes
the stamp, and a job whose record is missing or stamped otherwise re-plans (the slow,
always-correct path). The stamp is stricter than the fingerprint (a comment edit changes
it), which costs only that re-planning, never a wrong fingerprint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from pipeline import fingerprint
from pipeline.codehash import FOLLOWED
from pipeline.paths import fingerprint_path, workspace_path

PIPELINE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class NodeRecord:
    """One node as the runner needs it: identity, inputs, upstream artifacts."""

    study: str
    stage: str
    slug: str
    module: str
    gather: bool
    params: dict[str, Any]
    parts: dict[str, Any]
    fingerprint: str
    cells: tuple[str, ...]
    upstream: tuple[dict[str, Any], ...]  # {stage, slug, fingerprint, cells}
    gpus: int = 0  # devices the runner pins while computing it (StageSpec.gpus)

    @property
    def label(self) -> str:
        return f"{self.study}/{self.stage}/{self.slug}"

    def workspace(self, root: Path | None = None) -> Path:
        return workspace_path(self.study, self.stage, self.slug, self.gather, root)


def of_node(plan, node) -> NodeRecord:
    """The record of a planned node. An upstream node's cells are all the cells it serves for a
    gathering node, and this node's own cells otherwise (the ones it serves here): a node shared
    by every cell would otherwise put the whole study into each downstream record (quadratic)."""
    upstream = tuple(
        {
            "stage": u.stage,
            "slug": u.slug,
            "fingerprint": u.fingerprint,
            "cells": list(u.cells if node.spec.gather else node.cells),
        }
        for u in plan.upstream_nodes(node)
    )
    return NodeRecord(
        node.study,
        node.stage,
        node.slug,
        node.module,
        node.spec.gather,
        node.params,
        node.parts,
        node.fingerprint,
        node.cells,
        upstream,
        node.spec.gpus_for(node.params),
    )


def stamp(root: Path, params_path: Path) -> str:
    """Digest of every file a plan's fingerprints can depend on, except external inputs."""
    h = xxhash.xxh3_128()
    h.update(f"format {fingerprint.FORMAT}\nparams {params_path}\n".encode())
    h.update(params_path.read_bytes())
    dirs = [PIPELINE, *(root / name for name in FOLLOWED)]
    for directory in dirs:
        for base, subdirs, files in os.walk(directory):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(base, name)
                with open(path, "rb") as f:
                    h.update(f"\n{path}\n".encode())
                    h.update(f.read())
    return h.hexdigest()


def input_stat(path: str) -> list[int]:
    """What a record checks an external input by: size and mtime (taken before hashing it)."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def record_path(fp_file: Path) -> Path:
    return fp_file.with_suffix(".json")


def write_all(plan, root: Path | None = None) -> int:
    """Write every node's record (and a marker per excluded slug) whose content changed."""
    if plan.stamp is None:
        return 0
    inputs: dict[tuple[str, str, str], frozenset[str]] = {}  # node key → external inputs of it and its ancestors
    written = 0

    def put(path: Path, record: dict[str, Any]) -> None:
        nonlocal written
        text = json.dumps(record, sort_keys=True)
        try:
            if path.read_text() == text:
                return
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Written in place, not renamed into place: a job reading a half-written record
        # gets invalid JSON and plans instead, so atomicity would buy nothing but a syscall.
        path.write_text(text)
        written += 1

    for key, node in plan.nodes.items():
        own = frozenset(node.parts["inputs"])
        inputs[key] = own.union(*(inputs[node.study, s, u] for s, u in node.upstream))
        stats = {p: plan.input_stats[p] for p in sorted(inputs[key])}
        put(
            record_path(node.fingerprint_file(root)),
            {"stamp": plan.stamp, "inputs": stats, "node": of_node(plan, node).__dict__},
        )
    excluded = {"stamp": plan.stamp, "inputs": {}, "excluded": True}
    for study, stage, slug in plan.excluded:
        put(record_path(fingerprint_path(study, stage, slug, root)), excluded)
    return written


def load(study: str, stage: str, slug: str, root: Path, params_path: Path) -> NodeRecord | str | None:
    """The current record of a node, "excluded" for an excluded slug, None when missing or stale."""
    try:
        raw = json.loads(record_path(fingerprint_path(study, stage, slug)).read_text())
        if raw["stamp"] != stamp(root, params_path):
            return None
        if any(input_stat(p) != st for p, st in raw["inputs"].items()):
            return None
        if raw.get("excluded"):
            return "excluded"
        node = raw["node"]
        return NodeRecord(**{**node, "cells": tuple(node["cells"]), "upstream": tuple(node["upstream"])})
    except (OSError, ValueError, KeyError, TypeError):  # missing, half-written, another format, an input gone
        return None
