"""Failures as results: what a node that failed leaves behind, so a sweep goes on to its reports.

With ``--keep-going`` (what both engines' commands pass) a node whose stage fails, runs out of
memory or is killed gets a *failure marker* as its workspace ``meta.json`` (status ``failed``,
``oom``, ``killed``; the fingerprint it attempted, the error's first line, peak memory) and the
job exits 0, so the engine goes on; a node whose upstream left a marker gets an
``upstream_failed`` marker without computing. A marker never enters the store and never carries
a ``fingerprint`` key, so nothing takes it for a built artifact.

The next plain run retries a marked node: writing the marker also appends a note to the node's
fingerprint file, and the next fingerprint pass (the Snakefile parse, dvc.yaml's
``fingerprints`` stage) restores the file, which is a changed input to both engines.

A study's report is built from the cells that finished and names every other cell with its
state (``describe``); its tables state the build they reflect in their first line (``stamp``).
The end of a run says which nodes failed and exits non-zero (``check``): the Snakefile's
onsuccess, and dvc.yaml's ``failures`` stage (``python -m pipeline.failures``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.paths import fingerprint_path, workspace_path
from pipeline.store import _remove_tree, _write_json, read_meta

STATES = ("failed", "oom", "killed", "upstream_failed")
STALE, PARTIAL, BUILD = "STALE:", "PARTIAL build", "Build"  # how a table's first line starts
NOTE = "BUILD.txt"  # the same statement beside the CSVs, which stay plain for the tools reading them
SHOWN = 8  # missing cells named in a table's first line before "and N more"


def marker(directory: Path, fingerprint: str | None = None) -> dict[str, Any] | None:
    """The failure marker in ``directory`` (for ``fingerprint``, when given), else None."""
    meta = read_meta(directory) or {}
    if meta.get("status") not in STATES or (fingerprint and meta.get("attempted") != fingerprint):
        return None
    return meta


def _size(mb: float | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def describe(info: dict[str, Any]) -> str:
    """A failure as a table cell: ``OOM (peak 61.2 GB)``, ``failed (exit 1: <first error line>)``,
    ``killed (signal 9)``, ``upstream failed: <label> <its state>``."""
    status, code = info.get("status"), info.get("exit_code")
    if status == "oom":
        return f"OOM (peak {_size(info.get('peak_rss_mb'))})"
    if status == "killed":
        return f"killed (signal {-code})" if isinstance(code, int) else "killed"
    if status == "upstream_failed":
        return f"upstream failed: {info.get('cause')}"
    first = (info.get("error") or "").strip().splitlines()[:1]
    return f"failed (exit {code}: {first[0]})" if first else f"failed (exit {code})"


def upstream_state(study: str, up: dict[str, Any], store) -> str | None:
    """None when the upstream node ``up`` (a record's entry) is in the store; else its state:
    its marker's, else its recorded failure's, else ``pending``."""
    if store.get(up["fingerprint"]):
        return None
    ws = workspace_path(study, up["stage"], up["slug"], False)
    found = marker(ws, up["fingerprint"]) or store.failure(up["fingerprint"])
    return describe(found) if found else "pending"


def blocked_by(node, store) -> str | None:
    """For a per-cell node: the first upstream that left a failure marker, as ``label state``."""
    for up in node.upstream:
        ws = workspace_path(node.study, up["stage"], up["slug"], False)
        found = None if store.get(up["fingerprint"]) else marker(ws, up["fingerprint"])
        if found:
            root = found.get("cause") if found["status"] == "upstream_failed" else None
            return root or f"{node.study}/{up['stage']}/{up['slug']} {describe(found)}"
    return None


def cell_states(node, store) -> dict[str, str]:
    """For a gathering node: each cell whose upstream nodes are not all built → its state (a
    node's own failure before an upstream's failure it only inherited)."""
    states: dict[str, list[str]] = {}
    for up in node.upstream:
        state = upstream_state(node.study, up, store)
        if state is not None:
            for cell in up["cells"]:
                states.setdefault(cell, []).append(state)
    return {c: min(s, key=lambda x: x.startswith(("upstream", "pending"))) for c, s in states.items()}


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def build_line(fingerprint: str, t: float, n_cells: int, missing: dict[str, str]) -> str:
    """The first line of a report's tables: the build they reflect and the cells they lack."""
    if not missing:
        return f"{BUILD} {fingerprint[:12]} of {_when(t)}: all {n_cells} cells"
    named = [f"{c} ({s})" for c, s in sorted(missing.items())]
    more = f" and {len(named) - SHOWN} more (see {NOTE})" if len(named) > SHOWN else ""
    return (
        f"{PARTIAL} {fingerprint[:12]} of {_when(t)}: {n_cells - len(missing)} of {n_cells} cells; "
        f"missing: {'; '.join(named[:SHOWN])}{more}"
    )


def stamp(directory: Path, line: str, full: list[str] | None = None) -> None:
    """Put ``line`` first in every markdown (then a blank line) and LaTeX (as a comment) table of
    ``directory``, replacing a previous ``STALE:`` line; write it, then ``full``, to BUILD.txt."""
    for path in sorted(directory.glob("*.md")) + sorted(directory.glob("*.tex")):
        text = path.read_text()
        lead = "% " if path.suffix == ".tex" else ""
        if text.startswith(f"{lead}{STALE}"):
            text = text.split("\n", 2 if lead == "" else 1)[-1]
        tail = "\n" if lead else "\n\n"
        tmp = path.with_name(f".{path.name}.stamp")  # renamed over it: a link into the store is never edited
        tmp.write_text(f"{lead}{line}{tail}{text}")
        os.replace(tmp, path)
    note = directory / NOTE
    previous = note.read_text() if line.startswith(STALE) and note.exists() else ""
    if previous.startswith(STALE):
        previous = previous.split("\n", 1)[-1]
    body = [line, *(full or [])]
    note.unlink(missing_ok=True)
    note.write_text("\n".join(body) + "\n" + previous)


def write_marker(node, info: dict[str, Any]) -> None:
    """Make ``info`` (a failure) the node's workspace output and note it in its fingerprint file.

    A per-cell node's workspace becomes the marker alone. A report keeps the previous tables the
    engine left (Snakemake does; DVC removes a stage's outputs before running it, so none remain),
    each now stating first that it is stale and why (the build line under it names their build).
    """
    ws = node.workspace()
    meta = {**info, "attempted": node.fingerprint}
    meta.pop("fingerprint", None)
    if node.gather and ws.is_dir():
        (ws / "meta.json").unlink(missing_ok=True)
        _write_json(ws / "meta.json", meta)
        why = f"{STALE} the report of fingerprint {node.fingerprint[:12]} could not be built on {_when(time.time())}"
        stamp(ws, f"{why}: {describe(info)}; the tables below are an older build")
    else:
        ws.parent.mkdir(parents=True, exist_ok=True)
        tmp = ws.parent / f".{ws.name}.marker{os.getpid()}"
        _remove_tree(tmp)
        tmp.mkdir()
        _write_json(tmp / "meta.json", meta)
        old = ws.parent / f".{ws.name}.old{os.getpid()}"
        if ws.exists():
            os.rename(ws, old)
        os.rename(tmp, ws)
        _remove_tree(old)
    fp_file = fingerprint_path(node.study, node.stage, node.slug)
    fp_file.parent.mkdir(parents=True, exist_ok=True)
    fp_file.write_text(
        f"{node.fingerprint}\n# last attempt: {describe(info)} at {_when(time.time())}; the next fingerprint"
        " pass restores this file, so either engine retries the node\n"
    )


def place(tmp: Path, ws: Path, meta: dict[str, Any]) -> None:
    """Move a partial report (never published: it lacks cells its fingerprint covers) into ``ws``."""
    _write_json(tmp / "meta.json", meta)
    ws.parent.mkdir(parents=True, exist_ok=True)
    old = ws.parent / f".{ws.name}.old{os.getpid()}"
    if ws.exists():
        os.rename(ws, old)
    os.rename(tmp, ws)
    _remove_tree(old)


def check(plan, since: float | None = None) -> list[str]:
    """``label: state`` of every node of ``plan`` whose workspace holds a failure marker for its
    current fingerprint (written at or after ``since``, when given), root causes first."""
    found = []
    for node in plan.nodes.values():
        m = marker(node.workspace(), node.fingerprint)
        if m and (since is None or m.get("time", 0) >= since):
            found.append((m["status"] == "upstream_failed", f"{node.label}: {describe(m)}"))
    return [line for _, line in sorted(found)]


def report(lines: list[str]) -> str:
    """The end-of-run message for ``check``'s lines."""
    causes = [ln for ln in lines if ": upstream failed:" not in ln]
    return (
        f"{len(causes)} node(s) failed and {len(lines) - len(causes)} were not built because of them; "
        "the reports show them as rows and `ablate status` lists them; fix and rerun (a plain run retries them):\n"
        + "\n".join(f"  {ln}" for ln in lines)
    )


def main() -> int:
    """dvc.yaml's last stage: exit 1, naming them, when nodes of the plan hold failure markers."""
    from pipeline import plan as plan_mod
    from pipeline import project
    from stages import RECIPES

    lines = check(plan_mod.build(project.root() / "params.yaml", RECIPES))
    if lines:
        print(report(lines), file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
