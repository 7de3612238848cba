"""User mistakes at the `ablate` command line end in one clear line (exit 2), never a traceback;
`ablate why` names the upstream node that moved and what moved in it."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import ablate
from pipeline.codehash import ROOT


def ablate_run(*args: str, cwd=ROOT, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """`python ablate.py ARGS` as a user runs it, with no ABLATE_* overrides from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "ablate.py"), *args],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def test_why_with_an_incomplete_node_names_the_expected_form_and_candidates():
    proc = ablate_run("why", "ska_lm/train")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "expected STUDY/STAGE/SLUG" in proc.stderr
    assert "did you mean ska_lm/train/" in proc.stderr  # a real node of that stage from the plan


def test_why_with_a_misspelt_study_suggests_the_closest_node():
    proc = ablate_run("why", "ska_lmm/train")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "did you mean 'ska_lm/" in proc.stderr


def toy_project(path):
    """The toy recipe as a project of its own (its ablate.py and pipeline/ from this checkout)."""
    toy = ROOT / "tests" / "toy_project"
    path.mkdir()
    for src, dst in ((toy / "stages", "stages"), (ROOT / "pipeline", "pipeline")):
        shutil.copytree(src, path / dst, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(toy / "params.yaml", path / "params.yaml")
    shutil.copy2(ROOT / "ablate.py", path / "ablate.py")
    return path


def toy_run(project, *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in the toy project, its artifacts and store inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")} | {"PYTHONPATH": str(project)}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_why_names_the_upstream_node_that_moved_and_the_param_that_moved_it(tmp_path):
    """`n` is read by gen only: after changing it, power's own params and code are unchanged,
    yet it would rebuild; why says gen moved (by name) and that n went 5 → 6 in it."""
    project = toy_project(tmp_path / "toy")
    gen, power = "toy/gen/seed=0", "toy/power/seed=0,exponent=2"
    plan = toy_run(project, "ablate.py", "plan").stdout
    assert f"{gen}  " in plan and f"{power}  " in plan, plan
    for label in (gen, power):
        built = toy_run(project, "-m", "stages", *label.split("/"))
        assert built.returncode == 0, built.stderr
    assert toy_run(project, "ablate.py", "why", power).stdout == f"{power}: up to date\n"

    params = project / "params.yaml"
    params.write_text(params.read_text().replace("n: 5\n", "n: 6\n", 1))
    proc = toy_run(project, "ablate.py", "why", power)
    assert proc.returncode == 0, proc.stderr
    head, moved, cause = proc.stdout.splitlines()
    assert head.startswith(f"{power}: would rebuild (workspace has ")
    assert moved.startswith(f"upstream {gen} moved: ")
    assert cause == "  params.n: 5 → 6"  # indented: what moved inside gen
    assert toy_run(project, "ablate.py", "why", gen).stdout.splitlines()[1:] == ["params.n: 5 → 6"]


def test_why_on_a_report_names_each_moved_cell_and_what_moved_it(tmp_path):
    """The report gathers every power node (a sorted list of fingerprints, no names): why
    still pairs each recorded artifact with its node, here one rebuilt since (its old
    record only in the store) and three not, and explains each down to n: 5 → 6."""
    project = toy_project(tmp_path / "toy")
    labels = [line.split()[1] for line in toy_run(project, "ablate.py", "plan").stdout.splitlines()[:-1]]
    for label in labels:  # plan order: every upstream before its downstream
        assert toy_run(project, "-m", "stages", *label.split("/")).returncode == 0, label
    rebuilt = project / "artifacts" / "toy" / "power" / "seed=0,exponent=2"
    old_fp = json.loads((rebuilt / "meta.json").read_text())["fingerprint"]
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("n: 5\n", "n: 6\n", 1))
    for label in ("toy/gen/seed=0", "toy/power/seed=0,exponent=2"):
        assert toy_run(project, "-m", "stages", *label.split("/")).returncode == 0, label

    lines = toy_run(project, "ablate.py", "why", "toy/report/base").stdout.splitlines()
    moved = [ln.split()[1] for ln in lines if ln.startswith("upstream ")]
    assert moved == [f"toy/power/seed={s},exponent={e}" for s in (0, 1) for e in (2, 3)]  # not cube_big (n: 7)
    first = next(i for i, ln in enumerate(lines) if ln.startswith("upstream toy/power/seed=0,exponent=2 "))
    assert lines[first].startswith(f"upstream toy/power/seed=0,exponent=2 moved: {old_fp[:12]} → ")  # its own
    assert lines[first + 1].startswith("  upstream toy/gen/seed=0 moved: ")
    assert lines[first + 2] == "    params.n: 5 → 6"
    assert lines.count("    params.n: 5 → 6") == 4 and not any("is new" in ln or "unknown" in ln for ln in lines)


def test_why_on_a_node_not_in_the_plan_exits_2_and_suggests_the_closest(tmp_path):
    project = toy_project(tmp_path / "toy")
    proc = toy_run(project, "ablate.py", "why", "toy/powr/seed=0,exponent=2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no node toy/powr/seed=0,exponent=2 in the plan" in proc.stderr
    assert "did you mean 'toy/power/seed=0,exponent=2'?" in proc.stderr


def test_output_to_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    """`ablate plan | head -1`: the reader is gone before ablate writes; no BrokenPipeError trace."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = ablate_run("plan", stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, what a shell reports for git in the same case


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_memory_safe_on_cuda_without_a_gpu_stops_before_any_work():
    proc = ablate_run("memory-safe", "ska_lm", "--device", "cuda")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--device cuda: no CUDA device is available" in proc.stderr
    assert proc.stdout == ""  # no budget line, no cell estimated


@pytest.mark.parametrize("after", [False, True], ids=["before the command", "after the command"])
def test_params_option_is_accepted_before_or_after_the_command(tmp_path, capsys, after):
    other = tmp_path / "other.yaml"
    shutil.copy2(ROOT / "params.yaml", other)
    argv = ["check", "--params", str(other)] if after else ["--params", str(other), "check"]
    assert ablate.main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{other}: valid")


def test_a_missing_params_file_is_named():
    proc = ablate_run("check", "--params", "no-such-params.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--params no-such-params.yaml: no such file" in proc.stderr


def test_help_outside_a_project_prints_help_and_commands_say_why_they_cannot_run(tmp_path):
    helped = ablate_run("--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: ablate")
    assert "memory-safe" in helped.stdout  # the commands are listed
    status = ablate_run("status", cwd=tmp_path)
    assert status.returncode == 2
    assert status.stderr.startswith("ablate: error: not inside an ablate project")
