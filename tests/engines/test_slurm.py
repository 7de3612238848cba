"""Snakemake's SLURM executor on this project, for real.

The `slurm` test starts a one-node cluster (munged, slurmctld and slurmd from Debian's slurm-wlm,
`make slurm-setup`), builds the toy study with `snakemake --profile profiles/slurm`, and stops every
daemon it started, also when the test fails or the suite gets SIGTERM. It needs root (slurmd runs
jobs as their user) and writes /etc/slurm/slurm.conf: the SLURM executor drops SLURM_CONF from the
job steps, so only the default path reaches them. A slurm.conf that this test did not write is
never touched (the test skips instead). The other test needs no slurm: it runs what a cluster job
runs, a job's own snakemake, on a grid cell whose slug holds a comma.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.engines

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by tests/engines/test_slurm.py; removed when it ends\n"
ALL = {"gen": 3, "power": 5, "report": 1}  # the toy grid's nodes (see test_engines.py)
BUILD_TIMEOUT_S = 240


def _skip_reason() -> str | None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"slurm is not installed ({', '.join(missing)} not on PATH): `make slurm-setup` installs it"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    if CONF.exists() and not CONF.read_text().startswith(MARK):
        return f"{CONF} belongs to this machine's own slurm; the test will not overwrite it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(run: Path) -> str:
    host = socket.gethostname()
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    mem_mb = memory_mb * 4 // 5  # slurmd drains a node that claims more than it has
    return MARK + "\n".join(
        [
            "ClusterName=ablate-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={run}/munge.sock",
            "SlurmUser=root",
            f"StateSaveLocation={run}/ctld",
            f"SlurmdSpoolDir={run}/slurmd",
            f"SlurmctldPidFile={run}/slurmctld.pid",
            f"SlurmdPidFile={run}/slurmd.pid",
            f"SlurmctldLogFile={run}/slurmctld.log",
            f"SlurmdLogFile={run}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",  # no cgroups: runs in containers too
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",  # so the profile's squeue is the status command
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            "MpiDefault=none",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN",
            "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
    )


def _wait(what: str, ready, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log}\n{log.read_text()[-1500:]}" for log in logs if log.exists())
            raise AssertionError(f"{what} not within {timeout_s} s\n{tails}")
        time.sleep(0.2)


def _ask(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def slurm():
    """A running one-node cluster; afterwards its jobs are cancelled and its daemons stopped."""
    if reason := _skip_reason():
        pytest.skip(reason)
    run = Path(tempfile.mkdtemp(prefix="ablate-slurm-"))  # short: munged's socket path must fit 108 bytes
    run.chmod(0o755)  # munged refuses a socket in a directory others cannot enter
    for sub in ("ctld", "slurmd"):
        (run / sub).mkdir(parents=True)
    key = run / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_slurm_conf(run))
    daemons: list[subprocess.Popen] = []
    since = _now_ticks()

    def start(*cmd: str) -> None:
        out = open(run / f"{cmd[0]}.out", "w")
        daemons.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        out.close()

    logs = [run / name for name in ("munged.out", "munge.log", "slurmctld.log", "slurmd.log")]
    on_term = signal.signal(signal.SIGTERM, _interrupt)  # a `timeout`-killed suite still stops the daemons
    try:
        munge = [f"--socket={run}/munge.sock", f"--key-file={key}", f"--log-file={run}/munge.log"]
        start("munged", "--foreground", *munge, f"--pid-file={run}/munge.pid", f"--seed-file={run}/munge.seed")
        _wait("munged's socket", (run / "munge.sock").exists, 10, logs)
        start("slurmctld", "-D", "-i")
        start("slurmd", "-D")
        _wait("the node idle in sinfo", lambda: _ask("sinfo", "-h", "-o", "%T").strip() == "idle", 30, logs)
        yield run
    finally:
        try:
            _stop(daemons, since, logs)
        finally:
            signal.signal(signal.SIGTERM, on_term)
            shutil.rmtree(run, ignore_errors=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop(daemons: list[subprocess.Popen], since: int, logs: list[Path]) -> None:
    """Cancel every job first (their steps are slurmstepd processes outside our process tree), then stop
    slurmd, slurmctld and munged in that order, killing any that ignores SIGTERM for 10 s; last, kill
    whatever job step (and its processes) survived, and fail naming them."""
    if len(daemons) == 3 and all(d.poll() is None for d in daemons):
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, timeout=10)
        try:
            _wait("every job gone from squeue", lambda: _ask("squeue", "-h") == "", 30, logs)
        except (AssertionError, subprocess.TimeoutExpired):
            pass  # the daemons go anyway; the leftover check below names what survived
    for daemon in reversed(daemons):
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
    if CONF.exists() and CONF.read_text().startswith(MARK):
        CONF.unlink()
    left = _job_steps_since(since)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"job step processes outlived the cluster and were killed: {left}"


def _now_ticks() -> int:
    """The clock /proc/<pid>/stat gives start times in: ticks since boot."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _job_steps_since(since: int) -> list[int]:
    """Live slurmstepd processes started since ``since`` (so by this test's slurmd), and their descendants."""
    procs = {}  # pid -> (comm, parent pid, start ticks), live processes only
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                comm = (proc / "comm").read_text().strip()
                state, ppid, *rest = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:20]
                if state != "Z":
                    procs[int(proc.name)] = (comm, int(ppid), int(rest[-1]))
        except OSError:
            continue
    steps = {pid for pid, (comm, _, start) in procs.items() if comm == "slurmstepd" and start >= since}
    grown = True
    while grown:
        more = {pid for pid, (_, ppid, _) in procs.items() if ppid in steps} - steps
        steps |= more
        grown = bool(more)
    return sorted(steps)


@pytest.mark.slurm
def test_snakemake_on_slurm_builds_every_node_once_in_slurm_jobs(slurm, project):
    """The profile's jobs run on the cluster (one completed SLURM job per node), each finds the
    project's python through the PATH that sbatch exports, and grid slugs with commas reach their job."""
    build = project.run(
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--slurm-init-seconds-before-status-checks",  # the profile's 40 s suits a busy cluster, not a test
        "1",
        "--seconds-between-status-checks",
        "1",
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    logs = sorted((project.path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert build.returncode == 0, build.stderr[-3000:] + "".join(p.read_text()[-1500:] for p in logs[:2])

    status = json.loads(project.run("python", "ablate.py", "status", "--json").stdout)
    assert len(status) == sum(ALL.values()) and {r["state"] for r in status} == {"done"}, status
    computed = [b["node"] for b in project.builds() if b["action"] == "computed"]
    assert sorted(computed) == sorted({r["node"] for r in status}), "a node was computed twice or not at all"
    assert project.computed() == ALL

    jobs = [
        dict(f.split("=", 1) for f in line.split() if "=" in f)
        for line in _ask("scontrol", "show", "job", "-o").splitlines()
    ]
    assert [j["JobState"] for j in jobs] == ["COMPLETED"] * sum(ALL.values()), jobs


def test_a_cluster_jobs_snakemake_builds_the_grid_cell_whose_slug_holds_a_comma(project):
    """What every cluster executor runs on the node, without a cluster: Snakemake hands the job over as
    --target-jobs with the slug quoted, cuts it at the comma anyway, and common.smk mends it."""
    project.snakemake("artifacts/toy/gen/seed=1/meta.json")
    project.run(
        "snakemake",
        "--cores=1",
        "--mode=remote",  # a job's own snakemake: not the main process
        "--allowed-rules=toy_power",
        "--target-jobs",
        'toy_power:slug="seed=1,exponent=2"',  # as snakemake-interface-executor-plugins encodes it
    )
    assert [b["node"] for b in project.builds() if b["stage"] == "power"] == ["toy/power/seed=1,exponent=2"]
    assert (project.path / "artifacts/toy/power/seed=1,exponent=2/meta.json").exists()
