"""Build one node: `python -m stages <study> <stage> <slug>` lands here, from either engine.

Engines decide when to ask; this decides whether to compute. In order:
up to date in the workspace → nothing; in the store → restore (no compute); a verified
workspace copy not yet in the store (after ``dvc pull``) → adopt; with ``--cache-only``
(or ABLATE_CACHE_ONLY=1) → refuse, naming the node and the fingerprint the store lacks;
else, under the fingerprint's lock, compute in a child process into a temp dir and
publish atomically. The child gives us its exit code and its own peak memory; a failure is
recorded as ``oom`` only with evidence (the child caught MemoryError / torch.OutOfMemoryError, or
the cgroup's oom_kill counter rose while it ran), as ``killed`` when a signal ended it otherwise
(a user, a scheduler), else as ``failed``.

The node comes from its per-node record (pipeline.record) when the engine run wrote a
current one, so a job costs the same in a 10-cell study and a 10,000-cell one; otherwise
the study is planned here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import device, failures, gpus, paths, project, record, views
from pipeline.child import OOM_EXIT
from pipeline.record import NodeRecord
from pipeline.store import Store, StoreUnreachable, _remove_tree, read_meta

MISSING_EXIT = 4  # cache-only and the store lacks the fingerprint


def cache_only() -> bool:
    """ABLATE_CACHE_ONLY=1: reproduce from the store, never compute."""
    return os.environ.get("ABLATE_CACHE_ONLY", "") not in ("", "0")


def say(message: str) -> None:
    print(f"[ablate] {message}", file=sys.stderr, flush=True)


def log_build(node: NodeRecord, action: str, **extra: Any) -> None:
    """One JSON line per request in artifacts/.logs/builds.jsonl (counts, audits, timings)."""
    path = paths.artifacts_root() / ".logs" / "builds.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "time": time.time(),
        "node": node.label,
        "stage": node.stage,
        "fingerprint": node.fingerprint,
        "action": action,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **extra,
    }
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


OOM_COUNTERS = (  # cgroup v2, then v1; the first that exists holds this process's oom_kill counter
    "/sys/fs/cgroup{v2}/memory.events",
    "/sys/fs/cgroup/memory.events",
    "/sys/fs/cgroup/memory{v1}/memory.oom_control",
    "/sys/fs/cgroup/memory/memory.oom_control",
)


def _cgroup_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy: v2 (the ``0::`` line) and v1's memory controller."""
    found = {"v2": "", "v1": ""}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            found["v2"] = path.rstrip("/")
        elif "memory" in controllers.split(","):
            found["v1"] = path.rstrip("/")
    return found


def oom_kills() -> int | None:
    """The cgroup's count of OOM-killer kills, or None where no cgroup exposes one."""
    where = _cgroup_paths()
    for template in OOM_COUNTERS:
        try:
            text = Path(template.format(**where)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


def classify(returncode: int, oom_kills_before: int | None, oom_kills_after: int | None) -> str:
    """``oom`` only with evidence of it, ``killed`` for any other signal, else ``failed``."""
    if returncode == OOM_EXIT:  # the child caught MemoryError / OutOfMemoryError and said so
        return "oom"
    if returncode < 0:
        kernel_oom = None not in (oom_kills_before, oom_kills_after) and oom_kills_after > oom_kills_before
        return "oom" if kernel_oom and returncode == -signal.SIGKILL else "killed"
    return "failed"


def run_measured(cmd: list[str], **popen: Any) -> tuple[int, float]:
    """Run ``cmd``: its exit status (negative: the signal that ended it) and its own peak RSS in MB.
    os.wait4 reads this child's peak; RUSAGE_CHILDREN would give the largest of every child this
    process has waited for (`ablate cell` and `ablate memory-safe` run several)."""
    child = subprocess.Popen(cmd, **popen)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024


def _compute(node: NodeRecord, store: Store, gpu_env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run the stage in a child process writing into a fresh temp dir; publish on success.
    ``gpu_env``: the pinned device(s) as CUDA_VISIBLE_DEVICES ({} when unpinned)."""
    states = failures.cell_states(node, store) if node.gather else {}  # cells a report builds without
    upstream = []
    for up in node.upstream:
        entry = store.get(up["fingerprint"])
        if entry is None and states:
            continue
        if entry is None:
            raise RuntimeError(
                f"upstream {node.study}/{up['stage']}/{up['slug']} (fingerprint {up['fingerprint'][:12]}) is not "
                "in the store: it was never built, or its params or code changed since; build the whole study "
                "with the engine"
            )
        upstream.append({"stage": up["stage"], "slug": up["slug"], "path": str(entry), "cells": list(up["cells"])})
    cells = node.parts.get("cells", {})
    tmp = store.new_tmp(node.fingerprint)
    job = tmp.with_name(tmp.name + "__job.json")
    job.write_text(
        json.dumps(
            {
                "module": node.module,
                "params": node.params,
                "out": str(tmp),
                "upstream": upstream,
                "study": node.study,
                "threads": _threads(),
                "cells": {c: {**v, **({"state": states[c]} if c in states else {})} for c, v in cells.items()},
                "base": node.parts.get("base", {}),
                "result": str(job.with_suffix(".result")),
            }
        )
    )
    started, kills_before = time.time(), oom_kills()
    root = project.root()
    env = {**os.environ, "OMP_NUM_THREADS": str(_threads()), "PYTHONPATH": str(root), **gpu_env}
    returncode, peak_mb = run_measured([sys.executable, "-m", "pipeline.child", str(job)], env=env, cwd=root)
    wall = time.time() - started
    result_path = job.with_suffix(".result")
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    for f in (job, result_path):
        f.unlink(missing_ok=True)
    if returncode != 0:
        _remove_tree(tmp)
        info = {
            "status": classify(returncode, kills_before, oom_kills()),
            "exit_code": returncode,
            "node": node.label,
            "error": result.get("error"),
            "wall_s": wall,
            "peak_rss_mb": peak_mb,
            "time": time.time(),
        }
        store.record_failure(node.fingerprint, info)
        return returncode, info
    meta = {
        "status": "ok",
        "parts": node.parts,
        "metrics": result.get("metrics", {}),
        "timing": {"started": started, "wall_s": round(wall, 3)},
        "peak_rss_mb": round(peak_mb, 1),
        "device": result.get("device", "cpu"),
        "versions": {"python": platform.python_version(), **result.get("versions", {})},
        "host": socket.gethostname(),
        "threads": _threads(),
    }
    if node.gather:  # item 8: every table states the build it reflects and the cells it lacks
        views.write_metrics(tmp, meta["metrics"])  # the headline numbers, for dvc metrics/exp show
        missing = {c: states[c] for c in cells if c in states}
        full = [f"{c}: {s}" for c, s in sorted(missing.items())]
        failures.stamp(tmp, failures.build_line(node.fingerprint, started, len(cells), missing), full)
        if missing:  # not the artifact its fingerprint names: the workspace only, never the store
            meta = {**meta, "status": "partial", "attempted": node.fingerprint, "missing": missing}
            failures.place(tmp, node.workspace(), meta)
            return 0, meta
    store.publish(tmp, node.fingerprint, meta)
    return 0, meta


def build(
    node: NodeRecord, store: Store, planned: bool = True, keep_going: bool = False, workspace: bool = True
) -> int:
    """Make ``node``'s workspace hold its current artifact; returns an exit code.
    ``planned``: whether ``node`` came from planning here or from the engine run's record (logged).
    ``keep_going``: a failure becomes the node's output and the exit code 0 (pipeline.failures).
    ``workspace=False``: make the store hold it and leave the workspace alone (`ablate cell`:
    workspaces are the engines', which track them through the fingerprint files)."""

    def log(action: str, **extra: Any) -> None:
        log_build(node, action, planned=planned, **extra)

    fp, ws = node.fingerprint, node.workspace()
    try:
        device.requested()
    except ValueError as e:
        say(f"{node.label}: error: {e}")
        return 2
    in_workspace = (read_meta(ws) or {}).get("fingerprint") == fp
    if (in_workspace or not workspace) and store.get(fp):
        say(f"{node.label}: up to date")
        log("up_to_date")
        return 0
    problem = device.unavailable()  # before the lock and the temp dir: nothing is computed or recorded
    if problem:
        say(f"{node.label}: error: {problem}")
        return 2

    def refuse() -> int:
        say(
            f"{node.label}: error: the store ({store.root}) lacks fingerprint {fp} and cache-only is set "
            "(--cache-only / ABLATE_CACHE_ONLY=1): refusing to compute"
        )
        log("missing")
        return MISSING_EXIT

    if cache_only() and not in_workspace and not store.get(fp):  # before touching the store: it may be read-only
        return refuse()
    try:
        store.require_writable()
    except StoreUnreachable as e:
        say(f"{node.label}: error: {e}")
        return 2
    if in_workspace and store.adopt(fp, ws):  # e.g. after `dvc pull`: not in the store yet
        say(f"{node.label}: adopted the verified workspace copy into the store")
        log("adopted")
        return 0
    with store.lock(fp, on_wait=lambda: say(f"{node.label}: another builder holds it; waiting")):
        if store.get(fp):
            if workspace:
                store.materialize(fp, ws)
            say(f"{node.label}: restored from the store (fingerprint {fp[:12]}), no compute")
            log("store_hit")
            return 0
        if cache_only():  # e.g. the workspace copy did not verify, so adopting it failed
            return refuse()
        cause = _blocked(node, store)
        if cause:
            say(f"{node.label}: not built: {cause}")
            log("upstream_failed", cause=cause)
            return _failed(node, {"status": "upstream_failed", "cause": cause, "time": time.time()}, 1, keep_going)
        say(f"{node.label}: computing (fingerprint {fp[:12]})")
        with gpus.pin(node.label, node.gpus, say) as gpu_env:  # the device lock is held until the child ends
            code, info = _compute(node, store, gpu_env)
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            say(f"{node.label}: {info['status']} ({how})")
            log(info["status"], exit_code=code)
            return _failed(node, info, code, keep_going)
        if info["status"] == "partial":
            say(f"{node.label}: built without {len(info['missing'])} cell(s) (not stored): {sorted(info['missing'])}")
            log("partial", wall_s=info["timing"]["wall_s"], missing=sorted(info["missing"]))
            return 0
        if workspace:
            store.materialize(fp, ws)
    wall = info["timing"]["wall_s"]
    say(f"{node.label}: computed in {wall:.1f} s, peak RSS {info['peak_rss_mb']:.0f} MB")
    log("computed", wall_s=wall)
    return 0


def _blocked(node: NodeRecord, store: Store) -> str | None:
    """Why ``node`` cannot be computed because of failed upstream nodes, or None: a per-cell node
    whose upstream left a failure marker; a report none of whose cells finished."""
    if not node.gather:
        return failures.blocked_by(node, store)
    states = failures.cell_states(node, store)
    if states and len(states) == len(node.parts.get("cells", {})):
        first = sorted(states.items())[0]
        return f"none of its {len(states)} cells finished (e.g. {first[0]}: {first[1]})"
    return None


def _failed(node: NodeRecord, info: dict[str, Any], code: int, keep_going: bool) -> int:
    """With ``keep_going``, the failure becomes the node's output (a marker the next run retries) and
    the engine is told 0 so it goes on to the study's report; else ``code``, as the stage's own."""
    if not keep_going:
        return code
    failures.write_marker(node, info)
    say(f"{node.label}: failure recorded as its output (--keep-going); the next run retries it")
    return 0


def adopt_pulled(nodes: list, root: Path | None = None) -> int:
    """Adopt into the store every workspace copy (under ``root``, default artifacts/; e.g. from
    ``dvc pull``) that holds its node's fingerprint, verifies, and is not stored yet; returns how many.

    The fingerprint pass of both engines calls this for the nodes whose fingerprint file it
    wrote, because neither engine's job would see the copy: Snakemake deletes a job's meta.json
    before the job runs, and DVC runs no job for a stage its lock says is current.
    """
    store, adopted = Store(), 0
    for node in nodes:
        fp, ws = node.fingerprint, node.workspace(root)
        if (read_meta(ws) or {}).get("fingerprint") != fp or store.get(fp):
            continue
        try:
            store.require_writable()
            if not store.adopt(fp, ws):
                continue
        except OSError:  # an unreachable or read-only store: the node's job says so, naming it
            break
        log_build(node, "adopted", planned=True)
        adopted += 1
    if adopted:
        say(f"{adopted} verified workspace copies (e.g. from dvc pull) adopted into the store, no compute")
    return adopted


def main(recipes: dict[str, tuple[str, ...]], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages",
        description="Build one pipeline node (what Snakemake rules and dvc.yaml stages run).",
    )
    parser.add_argument("study")
    parser.add_argument("stage")
    parser.add_argument("slug", help="the node's slug: its directory name under artifacts/<study>/<stage>/")
    parser.add_argument("--params", help="params file (default: the project's params.yaml)")
    parser.add_argument(
        "--cache-only", action="store_true", help="fail instead of computing (same as ABLATE_CACHE_ONLY=1)"
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="on a stage failure, write a failure marker as the node's output and exit 0 (what the engines run)",
    )
    args = parser.parse_args(argv)
    if args.cache_only:
        os.environ["ABLATE_CACHE_ONLY"] = "1"
    try:
        root = project.root()
        params = Path(args.params or root / "params.yaml").resolve()
        node = record.load(args.study, args.stage, args.slug, root, params)
        planned = node is None
        if planned:  # no current record: plan the study (what the engine run did)
            from pipeline import plan as plan_mod  # only here: planning imports yaml and the recipes

            plan = plan_mod.build(params, recipes, only=[args.study])
            if (args.study, args.stage, args.slug) in plan.excluded:
                node = "excluded"
            else:
                node = record.of_node(plan, plan.node(args.study, args.stage, args.slug))
    except (ValueError, KeyError, project.NotAProject) as e:  # ParamsError is a ValueError
        say(f"error: {e.args[0] if isinstance(e, KeyError) else e}")
        return 2
    if node == "excluded":
        return _mark_excluded(paths.artifacts_root() / args.study / args.stage / args.slug)
    try:
        return build(node, Store(), planned, args.keep_going)
    except gpus.GpuError as e:
        say(f"{node.label}: error: {e}")
        return 2


def _mark_excluded(ws: Path) -> int:
    """DVC's matrix and foreach cannot skip combinations: an excluded cell, or a stage the cell's
    variant does not use (an SDPA cell's bank), gets a marker, no compute."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "meta.json").write_text(json.dumps({"status": "excluded"}) + "\n")
    say(f"{ws}: excluded by params.yaml, or unused by the cell's variant; nothing to build")
    return 0
