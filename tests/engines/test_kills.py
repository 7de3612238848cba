"""Kills, as a researcher meets them: a killed Snakemake run must not block the next plain
build, and a stage ended by a signal is `killed`, not `oom`, unless there is evidence of OOM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_engines import ALL, start_build_until_a_stage_is_half_written

from pipeline.runner import oom_kills

pytestmark = pytest.mark.engines


def snakemake_locks(project) -> list[Path]:
    return sorted((project.path / ".snakemake/locks").glob("*.lock"))


def test_a_plain_rerun_after_killing_the_whole_snakemake_process_group_completes(project):
    project.edit("params.yaml", "delay: 0.0", "delay: 30.0")
    proc = start_build_until_a_stage_is_half_written(project)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake, every runner and every stage child at once
    proc.wait()
    assert snakemake_locks(project), "snakemake left no lock: the test proves nothing"

    project.edit("params.yaml", "delay: 30.0", "delay: 0.0")
    rerun = project.snakemake()  # plain: no --unlock
    assert "removed 2 lock(s) of a killed Snakemake run" in rerun.stderr
    assert set(project.status().values()) == {"done"}
    assert project.computed() == ALL, "the killed run published something, or a node was computed twice"
    assert project.run(sys.executable, "-m", "ablate", "verify").returncode == 0
    assert not snakemake_locks(project)


def test_a_second_build_while_one_runs_is_refused_and_the_first_completes(project):
    """The live run's locks are not taken for a dead run's: Snakemake still refuses a second
    build over the same outputs, and nothing is computed twice or corrupted."""
    project.edit("params.yaml", "delay: 0.0", "delay: 10.0")
    first = start_build_until_a_stage_is_half_written(project)
    live_locks = snakemake_locks(project)
    second = project.snakemake(check=False)
    assert second.returncode != 0 and "LockException" in second.stderr
    assert snakemake_locks(project) == live_locks, "the second run removed the live run's locks"
    assert first.wait(timeout=300) == 0
    assert set(project.status().values()) == {"done"}
    assert project.computed() == ALL
    assert project.run(sys.executable, "-m", "ablate", "verify").returncode == 0
    assert "Nothing to be done" in project.snakemake().stderr


def test_a_plain_dvc_repro_after_killing_a_dvc_run_completes(project):
    project.edit("params.yaml", "delay: 0.0", "delay: 30.0")
    proc = start_build_until_a_stage_is_half_written(project, ("dvc", "repro", "--quiet"))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rwlock = (project.path / ".dvc/tmp/rwlock").read_text()
    assert f'"pid": {proc.pid}' in rwlock, "the killed dvc left no rwlock entry: the test proves nothing"
    project.edit("params.yaml", "delay: 30.0", "delay: 0.0")
    project.dvc_repro()  # plain: dvc drops a dead pid's rwlock entries itself
    assert set(project.status().values()) == {"done"}
    assert project.computed() == ALL


def test_a_stage_raising_memory_error_is_oom(project):
    project.edit("stages/power.py", 'raise RuntimeError("asked to fail")', 'raise MemoryError("asked to fail")')
    project.edit("params.yaml", "cube_big: {n: 7, exponent: 3}", "cube_big: {n: 7, exponent: 3, fail: true}")
    assert project.snakemake(check=False).returncode != 0
    states = project.status()
    assert states["toy/power/cube_big"] == "oom"
    assert states["toy/power/seed=0,exponent=2"] == "done"
    assert "exit code 3: MemoryError: asked to fail" in project.run(sys.executable, "-m", "ablate", "status").stdout


def stage_child(runner: subprocess.Popen) -> int:
    """The `python -m pipeline.child` process the runner started."""
    runner_pid, deadline = runner.pid, time.time() + 60
    while time.time() < deadline:
        assert runner.poll() is None, runner.communicate()[1]
        children = Path(f"/proc/{runner_pid}/task/{runner_pid}/children").read_text().split()
        for pid in children:
            if b"pipeline.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
        time.sleep(0.1)
    raise AssertionError("the runner never started the stage's child")


def test_a_stage_killed_by_sigkill_from_outside_is_killed_not_oom(project):
    project.edit("params.yaml", "delay: 0.0", "delay: 30.0")
    (project.path / "artifacts").mkdir()  # the store's parent, as a first engine run makes it
    kills_before = oom_kills()
    runner = subprocess.Popen(
        [sys.executable, "-m", "stages", "toy", "gen", "seed=0"],
        cwd=project.path,
        env=project.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = stage_child(runner)
    tmp = project.path / "artifacts/.store/tmp"
    deadline = time.time() + 60
    while not list(tmp.glob("*/values.json")) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)  # as a user or a scheduler would: not the OOM killer
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode != 0
    assert oom_kills() == kills_before, "the OOM killer struck during the test: it cannot tell a kill from an OOM"
    assert "toy/gen/seed=0: killed (signal 9)" in stderr
    assert project.status()["toy/gen/seed=0"] == "killed"
    listing = project.run(sys.executable, "-m", "ablate", "status").stdout
    assert "killed  toy/gen/seed=0  killed (signal 9 SIGKILL), no out-of-memory evidence" in listing
    assert "M oom 0" in listing and "K killed 1" in listing
