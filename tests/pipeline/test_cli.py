"""User mistakes at the `ablate` command line end in one clear line (exit 2), never a traceback."""

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
