"""GPU slots (pipeline.gpus): each GPU job holds its own device through a per-device flock, in real
processes on fake device lists (ABLATE_GPUS, or a fake nvidia-smi on PATH), so no GPU is needed."""

import os
import select
import subprocess
import sys

import pytest

from pipeline import gpus
from pipeline.codehash import ROOT, code_digests
from pipeline.spec import StageSpec
from stages.ska.bench import SPEC as BENCH

HOLDER = """
import sys, time
from pathlib import Path
from pipeline import gpus
release = Path(sys.argv[1])
with gpus.pin("job", int(sys.argv[2]), lambda m: print(m, file=sys.stderr, flush=True)) as env:
    print(env.get("CUDA_VISIBLE_DEVICES", "unpinned"), flush=True)
    while not release.exists():
        time.sleep(0.05)
"""


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_holders():
    """A failed assertion must not leave holders waiting for a release that never comes."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


class Holder:
    """A process that pins GPU(s) and keeps them until ``release()``."""

    def __init__(self, tmp_path, name: str, env: dict[str, str], count: int = 1):
        self.release_file = tmp_path / f"release-{name}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(self.release_file), str(count)],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        STARTED.append(self.proc)

    def device(self, timeout: float = 30) -> str | None:
        """The CUDA_VISIBLE_DEVICES it was given, or None if it has none within ``timeout``."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def said(self, timeout: float = 30) -> str:
        ready, _, _ = select.select([self.proc.stderr], [], [], timeout)
        return self.proc.stderr.readline().strip() if ready else ""

    def release(self) -> None:
        self.release_file.touch()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read()


@pytest.fixture
def env(tmp_path):
    """A clean environment with its own lock dir and no real GPU settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_") and k != "CUDA_VISIBLE_DEVICES"}
    return {**clean, "ABLATE_GPU_LOCK_DIR": str(tmp_path / "locks")}


def fake_nvidia_smi(tmp_path, rows: str) -> tuple[dict[str, str], object]:
    """A real `nvidia-smi` executable on PATH printing ``rows`` (rewritable later); it logs each call."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    table, calls = tmp_path / "smi-rows.csv", tmp_path / "smi-calls"
    table.write_text(rows)
    script = bindir / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat {table}\n')
    script.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}, (table, calls)


def test_two_concurrent_jobs_get_different_devices_and_a_third_waits_for_a_release(tmp_path, env):
    env = {**env, "ABLATE_GPUS": "0,1"}
    first, second = Holder(tmp_path, "a", env), Holder(tmp_path, "b", env)
    a, b = first.device(), second.device()
    assert {a, b} == {"0", "1"}
    third = Holder(tmp_path, "c", env)
    assert third.said() == "job: all GPUs (0,1) are held; waiting"
    assert third.device(timeout=1.5) is None  # still waiting while both are held
    first.release()
    assert third.device() == a  # the device the first one freed
    assert third.said() == f"job: got GPU {a}"
    second.release()
    third.release()


def test_a_job_needing_two_gpus_holds_two_distinct_devices(tmp_path, env):
    job = Holder(tmp_path, "a", {**env, "ABLATE_GPUS": "3,5,7"}, count=2)
    assert job.device() == "3,5"
    other = Holder(tmp_path, "b", {**env, "ABLATE_GPUS": "3,5,7"}, count=2)  # only 7 is left
    assert other.said() == "job: all GPUs (3,5,7) are held; waiting"
    job.release()
    assert other.device() in ("3,7", "5,7", "3,5")
    other.release()


def test_sharing_lets_that_many_jobs_onto_one_device(tmp_path, env):
    env = {**env, "ABLATE_GPUS": "0,1", "ABLATE_GPU_SHARE": "2"}
    jobs = [Holder(tmp_path, name, env) for name in "abc"]
    devices = sorted(job.device() for job in jobs)
    assert devices in (["0", "0", "1"], ["0", "1", "1"])  # every device's first slot goes before a second
    fourth = Holder(tmp_path, "d", env)
    assert fourth.device() in ("0", "1")  # two slots per device: the fourth still fits
    fifth = Holder(tmp_path, "e", env)
    assert fifth.said() == "job: all GPUs (0,1) are held; waiting"
    for job in (*jobs, fourth):
        job.release()
    assert fifth.device() in ("0", "1")
    fifth.release()


def test_the_min_free_memory_gate_waits_then_proceeds(tmp_path, env):
    path, (table, calls) = fake_nvidia_smi(tmp_path, "0, GPU-aaaa, 1024\n")
    job = Holder(tmp_path, "a", {**env, **path, "ABLATE_GPUS": "0", "ABLATE_MIN_FREE_GB": "4"})
    assert job.said() == "job: GPU 0 has 1.0 GB free, ABLATE_MIN_FREE_GB=4; waiting"
    assert job.device(timeout=1.5) is None
    table.write_text("0, GPU-aaaa, 8192\n")  # another process freed memory
    assert job.device() == "0"
    assert "--query-gpu=index,uuid,memory.free" in calls.read_text()
    job.release()


def test_devices_come_from_nvidia_smi_without_settings_and_from_cuda_visible_devices_first(tmp_path, env):
    path, _ = fake_nvidia_smi(tmp_path, "0, GPU-aaaa, 80000\n1, GPU-bbbb, 80000\n")
    first, second = Holder(tmp_path, "a", {**env, **path}), Holder(tmp_path, "b", {**env, **path})
    assert {first.device(), second.device()} == {"0", "1"}
    first.release()
    second.release()
    scheduled = Holder(tmp_path, "c", {**env, **path, "CUDA_VISIBLE_DEVICES": "GPU-bbbb"})
    assert scheduled.device() == "GPU-bbbb"  # a scheduler's choice is pinned among, never widened
    scheduled.release()


def test_no_gpu_found_or_device_cpu_runs_unpinned_and_cpu_never_calls_nvidia_smi(tmp_path, env):
    no_smi = {**env, "PATH": os.path.dirname(sys.executable)}  # nothing named nvidia-smi on it
    job = Holder(tmp_path, "a", no_smi)
    assert job.device() == "unpinned"
    job.release()
    path, (_, calls) = fake_nvidia_smi(tmp_path, "0, GPU-aaaa, 80000\n")
    job = Holder(tmp_path, "b", {**env, **path, "ABLATE_DEVICE": "cpu"})
    assert job.device() == "unpinned"
    job.release()
    assert not calls.exists()
    job = Holder(tmp_path, "c", {**env, **path, "CUDA_VISIBLE_DEVICES": ""})  # every GPU hidden
    assert job.device() == "unpinned"
    job.release()


@pytest.mark.parametrize(
    "value, why",
    [("x,y", "not ids: 'x', 'y'"), ("0,,1", "not ids: ''"), ("0,0", "repeated ids"), ("-1", "not ids: '-1'")],
)
def test_a_malformed_device_list_is_an_error_naming_it(value, why):
    with pytest.raises(gpus.GpuError) as error:
        gpus.parse_ids(value)
    assert str(error.value) == (
        f"ABLATE_GPUS={value!r}: expected a comma list of distinct device ids such as 0,1 (non-negative integers); "
        + why
    )


def test_bad_share_and_memory_settings_are_errors_naming_them(tmp_path, env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ABLATE_GPUS", "0")
    monkeypatch.setenv("ABLATE_GPU_SHARE", "0")
    with pytest.raises(gpus.GpuError, match="ABLATE_GPU_SHARE='0': expected a positive integer"):
        with gpus.pin("job", 1, print):
            pass
    monkeypatch.delenv("ABLATE_GPU_SHARE")
    monkeypatch.setenv("ABLATE_MIN_FREE_GB", "lots")
    with pytest.raises(gpus.GpuError, match="ABLATE_MIN_FREE_GB='lots': expected a non-negative number of GB"):
        with gpus.pin("job", 1, print):
            pass


def test_gpus_is_an_int_or_a_function_of_the_params():
    assert BENCH.gpus_for({**dict.fromkeys(BENCH.reads), "device": "cuda"}) == 1
    assert BENCH.gpus_for({**dict.fromkeys(BENCH.reads), "device": "cpu"}) == 0  # a CPU benchmark holds no slot
    assert StageSpec(name="s", reads=()).gpus_for({}) == 0
    with pytest.raises(ValueError, match=r"stage s: gpus=-1; expected an int >= 0 or a function of params"):
        StageSpec(name="s", reads=(), gpus=-1)
    with pytest.raises(KeyError, match="reads 'device' without declaring it"):
        StageSpec(name="s", reads=(), gpus=lambda p: p["device"] == "cuda").gpus_for({})


def test_declaring_gpus_leaves_the_code_fingerprint_unchanged(tmp_path):
    """Where a node runs is not what it computes: adding ``gpus`` must not rebuild anything."""
    digests = []
    for name, spec in [
        ("plain", 'StageSpec(name="s", reads=("a",))'),
        ("gpu", 'StageSpec(name="s", reads=("a",), gpus=1)'),
        ("reads", 'StageSpec(name="s", reads=("a", "b"))'),
    ]:
        root = tmp_path / name
        (root / "stages").mkdir(parents=True)
        (root / "stages" / "s.py").write_text(f"from pipeline.spec import StageSpec\nSPEC = {spec}\n")
        digests.append(code_digests(("stages.s",), root))
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]  # any other change to the SPEC still counts
