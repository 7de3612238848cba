"""Real snakemake and real dvc on the toy project: the store makes them agree.

Node counts of the toy grid: gen = 3 (seed {0,1} + the named cell's own n),
power = 5 (2 seeds × 2 exponents + the named cell), report = 1.
"""

import os
import signal
import subprocess
import time

import pytest
from conftest import make_project

pytestmark = pytest.mark.engines
ALL = {"gen": 3, "power": 5, "report": 1}


def test_snakemake_then_dvc_repro_computes_nothing_twice(project):
    project.snakemake()
    assert project.computed() == ALL
    n = len(project.builds())
    project.dvc_repro()
    assert project.computed(n) == {}, "dvc repro recomputed what snakemake built"
    assert {b["action"] for b in project.builds()[n:]} == {"store_hit"}
    assert "Nothing to be done" in project.snakemake().stderr
    assert set(project.status().values()) == {"done"}


def test_dvc_repro_then_snakemake_computes_nothing_twice(project):
    project.dvc_repro()
    assert project.computed() == ALL
    n = len(project.builds())
    project.snakemake()
    assert len(project.builds()) == n, "snakemake re-ran jobs that dvc had built"
    assert project.dvc_repro().returncode == 0 and project.computed(n) == {}


def test_editing_one_grid_value_recomputes_only_the_nodes_it_touches(project):
    project.snakemake()
    project.dvc_repro()
    n = len(project.builds())
    project.edit("params.yaml", "exponent: [2, 3]", "exponent: [2, 4]")
    project.snakemake()
    new = [b["node"] for b in project.builds()[n:] if b["action"] == "computed"]
    assert sorted(new) == ["toy/power/seed=0,exponent=4", "toy/power/seed=1,exponent=4", "toy/report/base"]
    m = len(project.builds())
    project.dvc_repro()  # dvc sees the new matrix items too, and restores them from the store
    assert project.computed(m) == {}
    assert (project.path / "artifacts/toy/power/seed=1,exponent=4/meta.json").exists()


def test_comment_edit_triggers_nothing_and_code_edit_rebuilds_downstream(project):
    project.snakemake()
    project.dvc_repro()
    n = len(project.builds())
    project.edit(
        "stages/helpers.py",
        "def slow_write(path, text, delay):",
        "# a comment\ndef slow_write(path, text, delay):\n    '''Docstrings do not count.'''",
    )
    assert "Nothing to be done" in project.snakemake().stderr
    project.dvc_repro()
    assert len(project.builds()) == n, "a comment edit made an engine ask for a build"
    project.edit("stages/helpers.py", "f.write(text[half:])", "f.write(text[half:] + ' ')")
    project.snakemake()
    assert project.computed(n) == ALL  # gen imports helpers; everything downstream follows
    m = len(project.builds())
    project.dvc_repro()
    assert project.computed(m) == {}


def start_build_until_a_stage_is_half_written(project, cmd=("snakemake", "--cores", "2")) -> subprocess.Popen:
    """A background build (``cmd``, default `snakemake --cores 2`; own process group), once a
    gen stage (params delay > 0) has half-written its output in the store's tmp/."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=project.path,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tmp = project.path / "artifacts/.store/tmp"
    deadline = time.time() + 60
    while not list(tmp.glob("*/values.json")) and time.time() < deadline:
        time.sleep(0.2)
    assert time.time() < deadline, "the stage never started"
    return proc


def test_kill_9_mid_stage_publishes_nothing_and_the_next_build_completes(project):
    project.edit("params.yaml", "delay: 0.0", "delay: 30.0")
    proc = start_build_until_a_stage_is_half_written(project)
    tmp = project.path / "artifacts/.store/tmp"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake, the runner and the stage's child
    proc.wait()
    objects = project.path / "artifacts/.store/objects"
    assert not list(objects.rglob("values.json")), "a partial artifact was published"
    assert not list((project.path / "artifacts/toy/gen").glob("*/meta.json"))
    assert list(tmp.glob("*/values.json")), "the half-written output stays in tmp/ only"

    project.edit("params.yaml", "delay: 30.0", "delay: 0.0")
    project.snakemake()  # plain: the killed run's Snakemake locks are cleared (workflow/rules/common.smk)
    assert set(project.status().values()) == {"done"}
    removed = project.run("python", "-m", "ablate", "gc", "--yes").stdout
    assert "tmp/" in removed  # the killed builder's temp dir
    assert not list(tmp.glob("*/values.json"))


def test_interrupting_a_rebuild_leaves_a_plain_rerun_working(project):
    """Ctrl-C while stale outputs rebuild marks them incomplete; profiles/default (read by a
    plain `snakemake`) reruns them instead of stopping with IncompleteFilesException."""
    assert "profiles/default" in project.snakemake("-n").stderr
    project.snakemake()
    project.edit("params.yaml", "delay: 0.0", "delay: 30.0")  # every gen node is now stale
    proc = start_build_until_a_stage_is_half_written(project)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    project.edit("params.yaml", "delay: 30.0", "delay: 0.0")
    project.snakemake()
    assert set(project.status().values()) == {"done"}


def test_two_clones_sharing_a_store_compute_each_node_once(tmp_path):
    store = tmp_path / "shared-store"
    a, b = make_project(tmp_path / "a", store), make_project(tmp_path / "b", store)
    for p in (a, b):
        p.edit("params.yaml", "delay: 0.0", "delay: 0.5")
    procs = [
        subprocess.Popen(
            ["snakemake", "--cores", "2"], cwd=p.path, env=p.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for p in (a, b)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    total = a.computed() + b.computed()
    assert total == ALL, f"computed {dict(total)} across both clones"
    assert (a.path / "artifacts/reports/toy/table.txt").read_text() == (
        b.path / "artifacts/reports/toy/table.txt"
    ).read_text()


def test_a_failing_stage_is_reported_with_its_exit_code(project):
    project.edit("params.yaml", "cube_big: {n: 7, exponent: 3}", "cube_big: {n: 7, exponent: 3, fail: true}")
    project.run("python", "-m", "ablate", "dvc-yaml", "--write")  # `fail` became a varying key
    result = project.snakemake(check=False)  # keep-going comes from profiles/default
    assert result.returncode != 0
    states = project.status()
    assert states["toy/power/cube_big"] == "failed"
    assert states["toy/power/seed=0,exponent=2"] == "done"
    detail = project.run("python", "-m", "ablate", "status").stdout
    assert "exit code 1: RuntimeError: asked to fail" in detail


@pytest.mark.parametrize(
    "old, new, path",
    [
        (
            "exponent: [2, 3]",
            "exponent: [2, '3']",
            "studies.toy.grid.exponent[1]",
        ),  # dvc parses it; `ablate fingerprints` refuses
        # a SPEC rule (power's ranges): refused when the Snakefile is parsed and by dvc's fingerprints stage
        ("exponent: [2, 3]", "exponent: [2, -1]", "studies.toy.grid.exponent: -1 is out of range; allowed: >= 0"),
        # the typo is named where it is, not where the grid spells the key right
        ("exponent: 1", "exponnt: 1", "studies.toy.params.exponnt: no stage of kind 'toy' reads this key"),
    ],
)
def test_malformed_params_fail_both_engines_and_touch_no_artifact(project, old, new, path):
    project.snakemake()
    project.dvc_repro()
    before = {p: p.stat().st_mtime_ns for p in (project.path / "artifacts").rglob("*") if ".logs" not in p.parts}
    project.edit("params.yaml", old, new)
    for result in (
        project.snakemake(check=False),
        project.run("dvc", "repro", check=False),
        project.run("python", "-m", "ablate", "status", check=False),
    ):
        assert result.returncode != 0
        assert path in result.stdout + result.stderr
    after = {p: p.stat().st_mtime_ns for p in (project.path / "artifacts").rglob("*") if ".logs" not in p.parts}
    assert after == before


def test_dvc_refuses_a_grid_axis_it_cannot_find(project):
    project.edit("params.yaml", "exponent: [2, 3]", "exponnt: [2, 3]")
    result = project.run("dvc", "repro", check=False)
    assert result.returncode != 0 and "studies.toy.grid.exponent" in result.stderr


def test_verify_finds_a_corrupted_entry_and_the_rebuild_recomputes_it(project):
    project.snakemake()
    entry = next((project.path / "artifacts/.store/objects").rglob("values.json"))
    entry.chmod(0o644)
    text = entry.read_text()
    entry.write_text(text.replace(text[1], "9" if text[1] != "9" else "8", 1))  # same size, other bytes
    result = project.run("python", "-m", "ablate", "verify", check=False)
    assert result.returncode == 1 and "content differs" in result.stdout
    project.run("python", "-m", "ablate", "verify", "--fix")
    assert project.run("python", "-m", "ablate", "verify").returncode == 0
    n = len(project.builds())
    project.snakemake("--forceall")
    assert sum(project.computed(n).values()) >= 1  # the dropped entry is computed again


def test_a_sweep_run_builds_its_cell_through_the_store_and_writes_an_offline_wandb_run(project):
    project.snakemake()
    n = len(project.builds())
    project.env["WANDB_MODE"] = "offline"
    out = project.run("python", "-m", "ablate", "cell", "toy", "--seed=1", "--exponent=3").stdout
    assert project.computed(n) == {}  # the engines had built it: the sweep run only restores
    assert '"power/total"' in out
    runs = list((project.path / "artifacts/.wandb/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), "no W&B run file written"
