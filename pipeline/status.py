"""Where every cell × stage stands: done, pending, stale, failed (exit code), oom, killed, running.

done     the workspace holds the artifact of the current fingerprint
pending  nothing built for it yet (``in store`` noted when a build would only restore it)
stale    the workspace holds an artifact of an older fingerprint (params or code changed)
failed   the last attempt at this fingerprint exited non-zero (its exit code is shown)
oom      the last attempt ran out of memory (the stage raised MemoryError / OutOfMemoryError,
         or the cgroup's OOM killer struck)
killed   a signal ended the last attempt with no out-of-memory evidence (a user, a scheduler)
running  a builder holds its lock now
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from pipeline.paths import artifacts_root
from pipeline.plan import Node, Plan
from pipeline.store import Store, read_meta

SYMBOL = {"done": "✓", "pending": "·", "stale": "~", "failed": "✗", "oom": "M", "killed": "K", "running": "…"}


@dataclass(frozen=True)
class NodeState:
    node: Node
    state: str
    detail: str = ""


def _listing(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return set()


class _Snapshot:
    """One listing of the store and the workspaces, so status costs a few directory reads
    plus one meta.json read per built node, not several path lookups per node."""

    def __init__(self, store: Store, artifacts: Path):
        objects = os.path.join(store.root, "objects")
        self.stored = {d + e for d in _listing(objects) for e in _listing(os.path.join(objects, d))}
        self.failed = {f.removesuffix(".json") for f in _listing(os.path.join(store.root, "failures"))}
        locks = os.path.join(store.root, "locks")
        self.locked = {d + f.removesuffix(".lock") for d in _listing(locks) for f in _listing(os.path.join(locks, d))}
        self.artifacts = str(artifacts)
        self._dirs: dict[str, set[str]] = {}

    def workspace_fingerprint(self, node: Node) -> str | None:
        if node.spec.gather:
            parent, name = os.path.join(self.artifacts, "reports"), node.study
        else:
            parent, name = os.path.join(self.artifacts, node.study, node.stage), node.slug
        if parent not in self._dirs:
            self._dirs[parent] = _listing(parent)
        if name not in self._dirs[parent]:
            return None
        return (read_meta(Path(parent, name)) or {}).get("fingerprint")


def node_state(node: Node, store: Store, seen: _Snapshot) -> NodeState:
    fp = node.fingerprint
    ws_fp = seen.workspace_fingerprint(node)
    if ws_fp == fp:
        return NodeState(node, "done")
    if fp in seen.locked and store.is_locked(fp):
        return NodeState(node, "running")
    failure = store.failure(fp) if fp in seen.failed else None
    if failure and failure["status"] == "killed":
        signum = -failure["exit_code"]
        return NodeState(
            node, "killed", f"killed (signal {signum} {signal.Signals(signum).name}), no out-of-memory evidence"
        )
    if failure:
        return NodeState(node, failure["status"], f"exit code {failure['exit_code']}: {failure.get('error') or ''}")
    in_store = " (in store: restores without compute)" if fp in seen.stored else ""
    if ws_fp is not None:
        return NodeState(node, "stale", f"workspace has {ws_fp[:12]}, plan wants {fp[:12]}{in_store}")
    return NodeState(node, "pending", in_store.strip(" ()"))


def collect(plan: Plan, store: Store, study: str | None = None) -> list[NodeState]:
    seen = _Snapshot(store, artifacts_root())
    return [node_state(n, store, seen) for n in plan.nodes.values() if study in (None, n.study)]


def to_compute(states: list[NodeState], store: Store) -> list[NodeState]:
    """Nodes a build would compute: not in the workspace, and the store lacks the fingerprint."""
    stored = set(store.fingerprints())
    return [s for s in states if s.state != "done" and s.node.fingerprint not in stored]


def render(plan: Plan, states: list[NodeState]) -> str:
    """One table per study: a row per cell, a column per stage, then failures and totals."""
    by_node = {s.node.label: s for s in states}
    lines = []
    for study in plan.studies.values():
        stages = list(plan.stages[study.kind])
        width = max(len(c.name) for c in study.cells)
        lines.append(f"{study.name}  ({len(study.cells)} cells)")
        lines.append("  " + "cell".ljust(width) + "  " + "  ".join(stages))
        for cell in study.cells:
            row = []
            for stage in stages:
                s = by_node.get(plan.by_cell[study.name, cell.name, stage].label)
                row.append((SYMBOL[s.state] if s else " ").center(len(stage)))
            lines.append("  " + cell.name.ljust(width) + "  " + "  ".join(row))
        lines.append("")
    for s in states:
        if s.state in ("failed", "oom", "killed", "stale"):
            lines.append(f"{s.state:7} {s.node.label}  {s.detail}")
    counts = {k: sum(s.state == k for s in states) for k in SYMBOL}
    legend = "  ".join(f"{SYMBOL[k]} {k} {v}" for k, v in counts.items())
    lines.append(f"nodes: {len(states)}   {legend}")
    return "\n".join(lines)
