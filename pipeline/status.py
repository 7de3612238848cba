"""Where every cell × stage stands: done, pending, stale, failed (exit code), oom, running.

done     the workspace holds the artifact of the current fingerprint
pending  nothing built for it yet (``in store`` noted when a build would only restore it)
stale    the workspace holds an artifact of an older fingerprint (params or code changed)
failed   the last attempt at this fingerprint exited non-zero (its exit code is shown)
oom      the last attempt ran out of memory
running  a builder holds its lock now
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.plan import Node, Plan
from pipeline.store import Store, read_meta

SYMBOL = {"done": "✓", "pending": "·", "stale": "~", "failed": "✗", "oom": "M", "running": "…"}


@dataclass(frozen=True)
class NodeState:
    node: Node
    state: str
    detail: str = ""


def node_state(node: Node, store: Store) -> NodeState:
    fp = node.fingerprint
    ws_fp = (read_meta(node.workspace()) or {}).get("fingerprint")
    if ws_fp == fp:
        return NodeState(node, "done")
    if store.is_locked(fp):
        return NodeState(node, "running")
    failure = store.failure(fp)
    if failure:
        return NodeState(node, failure["status"], f"exit code {failure['exit_code']}: {failure.get('error') or ''}")
    in_store = " (in store: restores without compute)" if store.entry(fp).exists() else ""
    if ws_fp is not None:
        return NodeState(node, "stale", f"workspace has {ws_fp[:12]}, plan wants {fp[:12]}{in_store}")
    return NodeState(node, "pending", in_store.strip(" ()"))


def collect(plan: Plan, store: Store, study: str | None = None) -> list[NodeState]:
    return [node_state(n, store) for n in plan.nodes.values() if study in (None, n.study)]


def to_compute(states: list[NodeState], store: Store) -> list[NodeState]:
    """Nodes a build would compute: not in the workspace, and the store lacks the fingerprint."""
    return [s for s in states if s.state != "done" and not store.entry(s.node.fingerprint).exists()]


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
        if s.state in ("failed", "oom", "stale"):
            lines.append(f"{s.state:7} {s.node.label}  {s.detail}")
    counts = {k: sum(s.state == k for s in states) for k in SYMBOL}
    legend = "  ".join(f"{SYMBOL[k]} {k} {v}" for k, v in counts.items())
    lines.append(f"nodes: {len(states)}   {legend}")
    return "\n".join(lines)
