# Thin adapter to pipeline.plan: the plan decides nodes, paths and dependencies; the
# rules only schedule. Parsing this file validates params.yaml and rewrites the
# per-node fingerprint files whose content changed (they are the rules' tracked inputs,
# so a comment edit triggers nothing and a real change triggers exactly its nodes).
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from pipeline import device as _device  # noqa: E402
from pipeline import paths as _paths  # noqa: E402
from pipeline import plan as _plan  # noqa: E402
from pipeline.params import ParamsError  # noqa: E402
from stages import RECIPES  # noqa: E402


def _hold_run_lock_and_clear_dead_runs_locks():
    """Snakemake's .snakemake/locks outlive a run killed by kill -9 or a pre-empted job and stop the
    next one with LockException. Every run holds a shared flock on .snakemake/ablate-runs.lock for its
    whole life (the kernel drops it when the process dies), so a run that can take it exclusively is
    the only live one: any lock left is a dead run's and goes. Live runs' locks stay, so Snakemake
    still refuses a second build over the same outputs while the first runs."""
    import fcntl

    state = Path(".snakemake")  # Snakemake's own state dir, in the working directory
    state.mkdir(exist_ok=True)
    fd = os.open(state / "ablate-runs.lock", os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by jobs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another snakemake is running here: its locks are live
        pass
    except OSError:  # a filesystem without flock: no way to tell, so Snakemake's locks stay
        return fd
    else:
        stale = sorted((state / "locks").glob("*.lock"))
        for lock in stale:
            lock.unlink(missing_ok=True)
        if stale:
            print(f"[ablate] removed {len(stale)} lock(s) of a killed Snakemake run (no run is live)", file=sys.stderr)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _rejoin_quoted_target_jobs():
    """A cluster job's snakemake gets its job as --target-jobs 'stage:study=toy,slug="seed=1,exponent=2"':
    Snakemake quotes a wildcard value holding a comma but its parser (9.x) splits on every comma, so
    a grid slug arrives cut ('seed=1', plus a stray 'exponent' wildcard) and the job fails to find its
    node. The parsed targets are not reachable from the Snakefile (the DAG settings are attached after
    parsing), so find them among live objects and mend their wildcards in place from the argument,
    read honouring the quotes."""
    import gc
    import itertools

    from snakemake_interface_executor_plugins.utils import TargetSpec

    args = sys.argv[sys.argv.index("--target-jobs") + 1 :]
    right = {}  # Snakemake's cut reading of each argument -> the right one
    for arg in itertools.takewhile(lambda a: not a.startswith("--"), args):
        rulename, _, wildcards = arg.partition(":")
        pairs = re.findall(r'(?:^|,)([^=,]+)=("[^"]*"|[^,]*)', wildcards)
        cut = {key: value.strip("'\"") for key, value in (e.split("=", 1) for e in wildcards.split(",") if "=" in e)}
        right[(rulename, tuple(cut.items()))] = {key: value.strip('"') for key, value in pairs}
    for spec in [o for o in gc.get_objects() if isinstance(o, TargetSpec)]:
        mended = right.get((spec.rulename, tuple(spec.wildcards_dict.items())))
        if mended is not None:
            spec.wildcards_dict.clear()
            spec.wildcards_dict.update(mended)


if workflow.is_main_process:  # not in a job's own snakemake (a cluster job), which takes no lock
    _RUN_LOCK = _hold_run_lock_and_clear_dead_runs_locks()  # held until this process ends
elif "--target-jobs" in sys.argv:
    _rejoin_quoted_target_jobs()

try:
    PLAN = _plan.build(f"{workflow.basedir}/params.yaml", RECIPES)
except ParamsError as _error:
    raise WorkflowError(f"params.yaml is invalid: {_error}") from None
try:  # a typo in the device setting fails here, not in every job
    _device.requested()
except ValueError as _error:
    raise WorkflowError(str(_error)) from None
PLAN.write_fingerprint_files()
if os.environ.get("ABLATE_CACHE_ONLY", "") not in ("", "0"):  # name every node the jobs will refuse, up front
    from pipeline import status as _status  # noqa: E402
    from pipeline.store import Store as _Store  # noqa: E402

    _store = _Store()
    for _s in _status.to_compute(_status.collect(PLAN, _store), _store):
        print(f"[ablate] cache-only: the store lacks {_s.node.label}  fingerprint {_s.node.fingerprint}",
              file=sys.stderr)
ART = Path(os.path.relpath(_paths.artifacts_root(), workflow.basedir))  # rule paths are relative to the workdir


def _meta(node):
    return f"{node.workspace(ART)}/meta.json"


REPORTED = [s for s in PLAN.studies if any(n.study == s and n.spec.gather for n in PLAN.nodes.values())]


def views_dir(study):
    """Where a study's report tables and plots are linked for `snakemake --report` (the report
    directory itself is not a Snakemake output: Snakemake would delete it before the report job, and
    a report that fails keeps its previous tables there, marked stale)."""
    return f"{ART}/.views/{study}"


def all_targets(study=None):
    nodes = [_meta(n) for n in PLAN.nodes.values() if study in (None, n.study)]
    return nodes + [views_dir(s) for s in REPORTED if study in (None, s)]


def node_of(wildcards, study, stage):
    return PLAN.node(study, stage, getattr(wildcards, "slug", _plan.BASE))


def node_inputs(study, stage):
    """Input function: the node's fingerprint file and its upstream nodes' meta.json."""

    def inputs(wildcards):
        node = node_of(wildcards, study, stage)
        return [str(node.fingerprint_file(ART))] + [_meta(u) for u in PLAN.upstream_nodes(node)]

    return inputs


def node_threads(study, stage):
    return lambda wildcards: node_of(wildcards, study, stage).spec.threads


def node_gpus(study, stage):
    """Resource ``gpu``: `--resources gpu=N` runs at most N GPU jobs at once (the runner pins each to a device)."""

    def gpus(wildcards):
        node = node_of(wildcards, study, stage)
        return node.spec.gpus_for(node.params)

    return gpus


def _check_gpu_settings():
    """Fail at parse on GPU settings no job could honour (Snakemake itself would scale a gpu=1 job
    down to a `--resources gpu=0` grant and run it anyway)."""
    from pipeline import gpus as _gpus

    if os.environ.get("ABLATE_GPUS", "").strip():
        try:
            _gpus.parse_ids(os.environ["ABLATE_GPUS"])
        except _gpus.GpuError as error:
            raise WorkflowError(str(error)) from None
    granted = workflow.global_resources.get("gpu")  # a snakemake Resource (value None when not given)
    if getattr(granted, "value", granted) == 0 and _device.requested() == "cuda":
        needing = sorted({f"{n.study}/{n.stage}" for n in PLAN.nodes.values() if n.spec.gpus_for(n.params) > 0})
        if needing:
            raise WorkflowError(
                f"--resources gpu=0 grants no GPU, but ABLATE_DEVICE=cuda and these stages need one: "
                f"{', '.join(needing)}; pass --resources gpu=<number of GPUs>, or ABLATE_DEVICE=cpu"
            )


_check_gpu_settings()


def _study_ranks():
    """Small studies first: each study's rank by its number of nodes (the largest 1, the smallest
    the number of studies), a cheap stand-in for its cost that a fresh build already knows, so a
    0.2-minute study's table appears early instead of after the big sweeps. Priorities stay
    positive: Snakemake's ILP scheduler leaves negative-priority jobs unscheduled while it can."""
    from collections import Counter

    size = Counter(n.study for n in PLAN.nodes.values())
    return {s: rank for rank, s in enumerate(sorted(size, key=lambda s: (-size[s], s)), start=1)}


STUDY_RANK = _study_ranks()
REPORT_PRIORITY = len(STUDY_RANK) + 1  # a report runs as soon as its study is done: results first
REPORT_PATTERNS = ["{name}.csv", "{name}.png"]  # what `snakemake --report` shows of a study's report


_RUN_STARTED = time.time()


def _end_of_run(failing):
    """Name the nodes whose failure this run recorded as their output (pipeline.failures); with
    ``failing`` (the run's jobs all exited 0), fail the run so nobody takes it for a success."""
    if not workflow.is_main_process:
        return
    from pipeline import failures as _failures

    lines = _failures.check(PLAN, since=_RUN_STARTED - 1)
    if not lines:
        return
    print(f"[ablate] {_failures.report(lines)}", file=sys.stderr)
    if failing:
        raise WorkflowError(f"{len(lines)} node(s) failed or were not built (listed above)")


onsuccess:
    _end_of_run(True)


onerror:
    _end_of_run(False)
