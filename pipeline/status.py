"""Where every cell × stage stands: done, pending, stale, failed (exit code), oom, killed, running.

done     the workspace holds the artifact of the current fingerprint
pending  nothing built for it yet (``in store`` noted when a build would only restore it)
stale    the workspace holds an artifact of an older fingerprint (params or code changed)
failed   the last attempt at this fingerprint exited non-zero (its exit code is shown)
oom      the last attempt ran out of memory (the stage raised MemoryError / OutOfMemoryError,
         or the cgroup's OOM killer struck)
killed   a signal ended the last attempt with no out-of-memory evidence (a user, a scheduler)
running  a builder holds its lock now
-        no node: the cell's variant does not use the stage (an SDPA cell's bank)
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

    def workspace_meta(self, node: Node) -> dict | None:
        if node.spec.gather:
            parent, name = os.path.join(self.artifacts, "reports"), node.study
        else:
            parent, name = os.path.join(self.artifacts, node.study, node.stage), node.slug
        if parent not in self._dirs:
            self._dirs[parent] = _listing(parent)
        if name not in self._dirs[parent]:
            return None
        return read_meta(Path(parent, name))


def node_state(node: Node, store: Store, seen: _Snapshot) -> NodeState:
    fp = node.fingerprint
    meta = seen.workspace_meta(node) or {}
    ws_fp = meta.get("fingerprint")
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
    if meta.get("attempted") == fp and meta.get("status") in ("upstream_failed", "partial"):  # pipeline.failures
        missing = meta.get("missing") or {}
        held = f"a report without {len(missing)} cell(s): {', '.join(sorted(missing))}" if missing else ""
        return NodeState(node, "pending", held or f"not built: upstream failed: {meta.get('cause')}")
    return NodeState(node, "pending", in_store.strip(" ()"))


def collect(plan: Plan, store: Store, study: str | None = None) -> list[NodeState]:
    seen = _Snapshot(store, artifacts_root())
    return [node_state(n, store, seen) for n in plan.nodes.values() if study in (None, n.study)]


def to_compute(states: list[NodeState], store: Store) -> list[NodeState]:
    """Nodes a build would compute: not in the workspace, and the store lacks the fingerprint."""
    stored = set(store.fingerprints())
    return [s for s in states if s.state != "done" and s.node.fingerprint not in stored]


def why(plan: Plan, node: Node, store: Store) -> list[str]:
    """Why ``node`` would rebuild, as lines: each fingerprint part that differs between its
    workspace artifact and the plan, and for an upstream that moved, which node it is and, in
    turn (indented), what changed in it, down to the params or code that moved first."""
    meta = read_meta(node.workspace()) or {}
    if meta.get("parts") is None:
        return [f"{node.label}: never built here"]
    lines = _changes(plan, node, meta["parts"], store, "")
    if not lines:
        return [f"{node.label}: up to date"]
    held = str(meta.get("fingerprint"))[:12]
    head = f"{node.label}: would rebuild (workspace has {held}, plan wants {node.fingerprint[:12]})"
    return [head, *lines]


def _changes(plan: Plan, node: Node, old: dict, store: Store, indent: str) -> list[str]:
    lines = []
    for key in sorted(set(old) | set(node.parts)):
        a, b = old.get(key) or {}, node.parts.get(key) or {}
        if a == b:
            continue
        if key == "upstream":
            lines += _moved_upstream(plan, node, a, b, store, indent)
        elif isinstance(a, dict) and isinstance(b, dict):
            lines += [
                f"{indent}{key}.{k}: {a.get(k)!r} → {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        else:
            lines.append(f"{indent}{key}: {a!r} → {b!r}")
    return lines


def _recorded_parts(fp: str, upstream: Node, store: Store) -> dict | None:
    """The parts the artifact ``fp`` was built from: its store entry's meta, else the upstream
    node's workspace while that still holds it (read only: a corrupt entry is not dropped here)."""
    for directory in (store.entry(fp), upstream.workspace()):
        meta = read_meta(directory) or {}
        if meta.get("fingerprint") == fp and meta.get("parts") is not None:
            return meta["parts"]
    return None


def _likeness(old: dict, node: Node, plan: Plan, store: Store) -> int:
    """How many fingerprint parts (a dict part: its entries) a recorded artifact shares with
    ``node``; a moved upstream counts by how like its own old record it is (power nodes of
    two seeds differ only in their gen upstream, whose records name the seed)."""
    score = 0
    for key, was in old.items():
        now = node.parts.get(key)
        if key == "upstream" and isinstance(was, dict):
            ups = {u.stage: u for u in plan.upstream_nodes(node)}
            for stage, fp in was.items():
                up = ups.get(stage)
                if not isinstance(fp, str) or up is None:  # a gather node's list: equal or not
                    score += fp == (now or {}).get(stage)
                elif fp == up.fingerprint:
                    score += 1 + len(up.parts)
                elif (parts := _recorded_parts(fp, up, store)) is not None:
                    score += _likeness(parts, up, plan, store)
        elif isinstance(was, dict) and isinstance(now, dict):
            score += sum(was.get(k) == now.get(k) for k in was)
        else:
            score += was == now
    return score


def _counterpart(plan: Plan, node: Node, gone: set[str], store: Store) -> str | None:
    """Which of the recorded fingerprints no current node has was ``node``'s: the one its
    workspace still holds, else the recorded artifact most like it (params, code: a gather
    node's upstream list does not say whose each was), else the only one; None if unclear."""
    held = (read_meta(node.workspace()) or {}).get("fingerprint")
    if held in gone:
        return held
    scored = sorted(
        ((_likeness(parts, node, plan, store), fp) for fp in gone if (parts := _recorded_parts(fp, node, store))),
        reverse=True,
    )
    if scored and (len(scored) == 1 or scored[0][0] > scored[1][0]):
        return scored[0][1]
    return next(iter(gone)) if len(gone) == 1 else None


def _moved_upstream(plan: Plan, node: Node, old: dict, new: dict, store: Store, indent: str) -> list[str]:
    """Name each upstream node whose fingerprint is not the one ``node``'s artifact recorded
    (a gather node records a sorted list per stage), then explain it from its old parts."""
    lines = []
    for stage in sorted(set(old) | set(new)):
        if old.get(stage) == new.get(stage):
            continue
        was = old.get(stage) or []
        was = set(was) if isinstance(was, list) else {was}
        ups = [u for u in plan.upstream_nodes(node) if u.stage == stage]
        moved = [u for u in ups if u.fingerprint not in was]
        gone = was - {u.fingerprint for u in ups}
        for u in moved:
            before = _counterpart(plan, u, gone, store)
            if before is None:
                lines.append(f"{indent}upstream {u.label} is new to it (now {u.fingerprint[:12]})")
                continue
            gone.discard(before)
            lines.append(f"{indent}upstream {u.label} moved: {before[:12]} → {u.fingerprint[:12]}")
            parts = _recorded_parts(before, u, store)
            lines += (
                _changes(plan, u, parts, store, indent + "  ")
                if parts is not None
                else [
                    f"{indent}  (its old artifact {before[:12]} is in neither the store nor its workspace:"
                    " what moved in it is unknown)"
                ]
            )
        if gone:
            lines.append(f"{indent}upstream {stage}: {len(gone)} recorded artifact(s) no longer in the plan")
    return lines


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
                node = plan.by_cell.get((study.name, cell.name, stage))  # none: the cell's variant skips it
                s = by_node.get(node.label) if node else None
                row.append((SYMBOL[s.state] if s else " " if node else "-").center(len(stage)))
            lines.append("  " + cell.name.ljust(width) + "  " + "  ".join(row))
        lines.append("")
    for s in states:
        if s.state in ("failed", "oom", "killed", "stale") or s.detail.startswith(("not built", "a report without")):
            lines.append(f"{s.state:7} {s.node.label}  {s.detail}")
    counts = {k: sum(s.state == k for s in states) for k in SYMBOL}
    legend = "  ".join(f"{SYMBOL[k]} {k} {v}" for k, v in counts.items())
    lines.append(f"nodes: {len(states)}   {legend}")
    return "\n".join(lines)
