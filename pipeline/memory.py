"""A cell's peak memory, measured rather than modelled: `ablate memory-safe` runs the cell's own
train stage for a few steps in a child process and reads that child's peak RSS (or its CUDA
peak on a GPU).

A formula undercounted ska_lm's peak tenfold (0.045 GiB estimated, ≈ 496 MB recorded): it
left out the process itself (Python with torch imported: 220 MB measured here), the
data a stage loads and the allocator's slack. The probe counts all of them, for every study
with a train stage and no per-study model: it is the same code, params and data as the build,
with ``steps`` cut to ``PROBE_STEPS`` (a training step's memory does not grow with their
number; the last step also runs the validation pass). Its child is the one the runner
computes in (pipeline.child), so the probe and the ``peak_rss_mb`` a build records measure
the same process. A probe needs the train stage's upstream (data, tokens, banks) in the store
and builds it there first; the workspaces are left to the engines.

No torch import here: the child does that.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from pipeline import paths, project, record, runner
from pipeline.plan import Node, Plan
from pipeline.store import Store, read_json, read_meta

TRAIN = "train"
PROBE_STEPS = 2


class ProbeError(RuntimeError):
    """A probe (or the upstream build it needs) failed: the message names the node and why."""


def train_node(plan: Plan, study: str, cell: str) -> Node | None:
    """The cell's train node, or None for a study without a train stage."""
    return plan.by_cell.get((study, cell, TRAIN))


def recorded_peak_mb(node: Node, store: Store, device: str) -> float | None:
    """The peak the store's build of ``node`` recorded, or None when it was never built."""
    entry = store.get(node.fingerprint)
    meta = (read_meta(entry) or {}) if entry else {}
    if device == "cuda":
        return meta.get("metrics", {}).get("cuda_peak_mb")
    return meta.get("peak_rss_mb")


def probe_params(params: dict) -> dict:
    """``params`` with the training cut to PROBE_STEPS steps (and its warm-up to fit them)."""
    cut = {**params, "steps": min(params["steps"], PROBE_STEPS)}
    if "warmup_steps" in cut:
        cut["warmup_steps"] = min(cut["warmup_steps"], cut["steps"] - 1)
    return cut


def build_upstream(plan: Plan, node: Node, store: Store) -> None:
    """Every node ``node`` needs, in the store (built there if missing; workspaces untouched)."""
    for up in plan.upstream_nodes(node):
        build_upstream(plan, up, store)
        code = runner.build(record.of_node(plan, up), store, workspace=False)
        if code:
            raise ProbeError(f"{up.label}: its build failed (exit code {code}), so {node.label} cannot be probed")


def probe_peak_mb(plan: Plan, node: Node, store: Store, device: str) -> float:
    """Peak memory (MB) of ``node``'s stage run for PROBE_STEPS steps in a child process:
    its RSS on the CPU, torch's CUDA peak on a GPU. Kept per fingerprint, device and host in
    artifacts/.memory/, so asking again (another budget) costs nothing."""
    kept = paths.artifacts_root() / ".memory" / f"{node.fingerprint}.{device}.{socket.gethostname()}.json"
    known = read_json(kept)
    if known:
        return known["peak_mb"]
    peak = _probe(plan, node, store, device)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({"node": node.label, "steps": PROBE_STEPS, "peak_mb": peak}))
    return peak


def _probe(plan: Plan, node: Node, store: Store, device: str) -> float:
    build_upstream(plan, node, store)
    rec = record.of_node(plan, node)
    with tempfile.TemporaryDirectory(prefix="ablate-memory-") as tmp:
        job, result, out = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "out")
        out.mkdir()
        upstream = [{**u, "path": str(store.get(u["fingerprint"]))} for u in rec.upstream]
        job.write_text(
            json.dumps(
                {
                    "module": node.module,
                    "params": probe_params(node.params),
                    "out": str(out),
                    "upstream": upstream,
                    "study": node.study,
                    "threads": runner._threads(),
                    "cells": {},
                    "base": {},
                    "result": str(result),
                }
            )
        )
        root = project.root()
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "ABLATE_DEVICE": device,
            "OMP_NUM_THREADS": str(runner._threads()),
        }
        with open(Path(tmp, "log"), "w+") as log:
            code, peak_mb = runner.run_measured(
                [sys.executable, "-m", "pipeline.child", str(job)], env=env, cwd=root, stdout=log, stderr=log
            )
            log.seek(0)
            tail = log.read()[-2000:]
        answer = json.loads(result.read_text()) if result.exists() else {}
    if code != 0:
        raise ProbeError(f"{node.label}: the probe failed (exit {code}): {answer.get('error')}\n{tail}")
    return answer["metrics"]["cuda_peak_mb"] if device == "cuda" else peak_mb
