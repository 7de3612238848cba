"""`ablate cell` never leaves a workspace wrong, and a plain engine run repairs one that is.

The reported scenario: params.yaml edited to an off-plan value that keeps the grid cell's slugs
(here the base ``n``, as ``window: 256`` was), `ablate cell` on that cell, params.yaml restored.
`ablate cell` now builds into the store only; and a workspace holding another fingerprint
(what the old `ablate cell` left, with a meta.json newer than the fingerprint file) is
restored by the next run of either engine, from the store, computing nothing.
"""

import json
import os
import random
import sys
import time

import pytest

from pipeline.store import Store

pytestmark = pytest.mark.engines
CELL = ("--seed=0", "--exponent=2")
CELL_NODES = ("toy/gen/seed=0", "toy/power/seed=0,exponent=2")


def toy_values(seed: int, n: int) -> list[int]:
    """What the toy gen stage draws."""
    rng = random.Random(seed)
    return [rng.randrange(100) for _ in range(n)]


def logged(stdout: str) -> dict:
    """The metrics dict `ablate cell` prints last (what it logs to W&B)."""
    return json.loads(stdout[stdout.rindex("{") :])


def build(project, engine: str):
    return project.snakemake() if engine == "snakemake" else project.dvc_repro()


def workspace_fingerprints(project) -> dict[str, str]:
    """Every node's workspace meta.json fingerprint."""
    return {
        node: json.loads((project.path / "artifacts" / node / "meta.json").read_text())["fingerprint"]
        for node in (*CELL_NODES, "toy/gen/seed=1", "toy/power/seed=1,exponent=3")
    }


def plan_fingerprints(project) -> dict[str, str]:
    out = project.run(sys.executable, "-m", "ablate", "status", "--json").stdout
    return {r["node"]: r["fingerprint"] for r in json.loads(out)}


def ablate_cell(project, *flags: str, check: bool = True):
    project.env["WANDB_MODE"] = "disabled"
    return project.run(sys.executable, "-m", "ablate", "cell", "toy", *flags, check=check)


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_ablate_cell_off_plan_leaves_the_workspace_alone_and_its_nodes_restore(project, engine):
    build(project, engine)
    before = workspace_fingerprints(project)
    project.edit("params.yaml", "n: 5", "n: 256")  # off the plan; the cell's slugs stay the same
    n = len(project.builds())
    printed = ablate_cell(project, *CELL).stdout
    assert project.computed(n) == {"gen": 1, "power": 1}
    assert logged(printed)["gen/total"] == sum(toy_values(0, 256))  # from the store
    assert workspace_fingerprints(project) == before, "ablate cell wrote a workspace behind the engine's back"
    n = len(project.builds())
    build(project, engine)  # with n: 256 in place, the engine takes the cell's nodes from the store
    assert {b["node"]: b["action"] for b in project.builds()[n:] if b["node"] in CELL_NODES} == dict.fromkeys(
        CELL_NODES, "store_hit"
    )
    project.edit("params.yaml", "n: 256", "n: 5")
    n = len(project.builds())
    build(project, engine)
    assert project.computed(n) == {}
    planned = plan_fingerprints(project)
    assert all(planned[node] == fp for node, fp in workspace_fingerprints(project).items())
    assert set(project.status().values()) == {"done"}


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_a_plain_run_restores_a_workspace_holding_another_fingerprint(project, engine):
    """What the old `ablate cell` left: the cell's workspaces hold the off-plan artifacts, their
    meta.json newer than the fingerprint files (Snakemake then saw nothing to do)."""
    build(project, engine)
    planned = plan_fingerprints(project)
    project.edit("params.yaml", "n: 5", "n: 256")
    off_plan = plan_fingerprints(project)
    ablate_cell(project, *CELL)  # the off-plan artifacts, into the store
    project.edit("params.yaml", "n: 256", "n: 5")
    store = Store(project.env["ABLATE_STORE"])
    time.sleep(0.01)
    for node in CELL_NODES:
        ws = project.path / "artifacts" / node
        store.materialize(off_plan[node], ws)
        os.utime(ws / "meta.json")  # newer than its fingerprint file, as a fresh compute is
    n = len(project.builds())
    proc = build(project, engine)
    if engine == "snakemake":
        assert "2 workspace(s) held another fingerprint than the plan's" in proc.stderr
    assert project.computed(n) == {}
    assert all(planned[node] == fp for node, fp in workspace_fingerprints(project).items())
    assert set(project.status().values()) == {"done"}
    n = len(project.builds())
    again = build(project, engine)  # repaired for good: the next run has nothing to do
    assert len(project.builds()) == n
    if engine == "snakemake":
        assert "Nothing to be done" in again.stderr


def test_ablate_cell_without_wandb_fails_before_any_compute(project, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "wandb.py").write_text("raise ImportError('No module named wandb (test shim)')\n")
    project.env["PYTHONPATH"] = f"{shim}{os.pathsep}{project.env['PYTHONPATH']}"
    project.env.pop("WANDB_MODE", None)
    proc = project.run(sys.executable, "-m", "ablate", "cell", "toy", *CELL, check=False)
    assert proc.returncode == 2
    assert "cannot import wandb" in proc.stderr and "WANDB_MODE=disabled" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.builds() == []


def test_ablate_cell_usage_mistakes_get_usage_or_the_allowed_values(project):
    helped = ablate_cell(project, "--help")
    assert "usage: ablate cell" in helped.stdout and "--cell=NAME" in helped.stdout
    cases = {
        ("seed=0", "--exponent=2"): "'seed=0': expected --AXIS=VALUE",
        (): "name the cell",
        ("--seed=7", "--exponent=2"): "grid.seed: '7' is not a value of this axis; allowed: 0, 1",
        ("--cell=cube_bigg",): "no cell 'cube_bigg' (named cells: cube_big)",
        ("--n=3",): "not an axis: n; the axes are seed, exponent",
    }
    for flags, message in cases.items():
        proc = ablate_cell(project, *flags, check=False)
        assert proc.returncode == 2, flags
        assert message in proc.stderr and "Traceback" not in proc.stderr, (flags, proc.stderr)
    assert project.builds() == []


def test_a_named_cell_builds(project):
    (project.path / "artifacts").mkdir()  # the fixture's ABLATE_STORE lives in it
    printed = ablate_cell(project, "--cell=cube_big").stdout
    assert logged(printed)["power/total"] == sum(v**3 for v in toy_values(0, 7))
    assert project.computed() == {"gen": 1, "power": 1}


def test_a_workspace_the_engine_has_yet_to_rebuild_is_not_set_aside(project):
    """After a params edit and two dry runs, the stale workspaces stay (stale, not pending), so
    `ablate why` still reads what they were built from; only the real run rebuilds them."""
    project.snakemake()
    project.edit("params.yaml", "n: 5", "n: 6")
    project.snakemake("-n")
    second = project.snakemake("-n")
    assert "held another fingerprint" not in second.stderr
    states = project.status()
    assert states["toy/gen/seed=0"] == "stale" and states["toy/power/seed=0,exponent=2"] == "stale"
    why = project.run(sys.executable, "-m", "ablate", "why", "toy/gen/seed=0").stdout
    assert "params.n: 5 → 6" in why
