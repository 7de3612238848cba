"""GPU slots: pin each GPU job to free device(s) of this machine through per-device lock files.

Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once; it does not say which
device each gets. The runner asks ``pin`` before computing a node whose stage declares
``gpus`` ≥ 1: it takes an exclusive flock on ``<lock dir>/<device>.lock`` for a free device,
waits (saying so) while every device is held, and hands the child ``CUDA_VISIBLE_DEVICES``
naming only its device(s). The kernel drops a flock when its holder dies, so a killed build
frees its GPU with no cleanup.

The lock dir is machine-local (``/tmp/ablate-gpu-locks``, or ``ABLATE_GPU_LOCK_DIR``): GPUs belong
to a machine, so every clone and every store on it must see the same locks (not the workspace),
and a store on a shared filesystem would make device 0 of one host block device 0 of another.

Settings (environment):
  ABLATE_GPUS          comma list of device ids (``0,1``): the devices to use; overrides discovery
  ABLATE_GPU_SHARE     jobs allowed per device at once (default 1: a GPU is never shared)
  ABLATE_MIN_FREE_GB   wait until the device has at least this much free memory (nvidia-smi)
  ABLATE_GPU_LOCK_DIR  where the per-device lock files live
  ABLATE_DEVICE=cpu    no pinning and no nvidia-smi call at all
Without ABLATE_GPUS the devices are those of CUDA_VISIBLE_DEVICES if set, else those nvidia-smi
lists; none found (a CPU machine) means the job runs unpinned, as on CPU.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import device

POLL_S = 0.5  # how often a waiting job retries the locks (and re-reads free memory)
QUERY = ["nvidia-smi", "--query-gpu=index,uuid,memory.free", "--format=csv,noheader,nounits"]
ID = re.compile(r"^\d+$")


class GpuError(ValueError):
    """A GPU setting that cannot be honoured; the message names the setting and what is allowed."""


def parse_ids(text: str) -> list[str]:
    """``ABLATE_GPUS``: a comma list of distinct non-negative integers."""
    ids = [t.strip() for t in text.split(",")]
    bad = [t for t in ids if not ID.match(t)]
    if bad or len(set(ids)) != len(ids):
        raise GpuError(
            f"ABLATE_GPUS={text!r}: expected a comma list of distinct device ids such as 0,1 "
            f"(non-negative integers){'; not ids: ' + ', '.join(map(repr, bad)) if bad else '; repeated ids'}"
        )
    return ids


def _number_env(name: str, default: float, kind: type = int) -> float:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < (1 if kind is int else 0):
        allowed = "a positive integer" if kind is int else "a non-negative number of GB"
        raise GpuError(f"{name}={raw!r}: expected {allowed}")
    return value


def query() -> list[tuple[str, str, float]]:
    """(index, uuid, free MB) per device nvidia-smi lists; [] where it is missing or fails."""
    if shutil.which(QUERY[0]) is None:
        return []
    try:
        out = subprocess.run(QUERY, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and ID.match(parts[0]):
            try:
                rows.append((parts[0], parts[1], float(parts[2])))
            except ValueError:  # "[N/A]" free memory: a device nvidia-smi cannot read is not offered
                continue
    return rows


def visible() -> list[str]:
    """The devices GPU jobs may be pinned to (see the module docstring for the order of sources)."""
    if device.requested() == "cpu":
        return []
    if os.environ.get("ABLATE_GPUS", "").strip():
        return parse_ids(os.environ["ABLATE_GPUS"])
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:  # a scheduler's (or the user's) choice: pin among those; "" or -1 hides every GPU
        ids = [t.strip() for t in cvd.split(",") if t.strip()]
        return [] if not ids or ids[0].startswith("-") else ids
    return [index for index, _, _ in query()]


def free_gb(device: str) -> float | None:
    """Free memory of ``device`` (an index or a UUID) per nvidia-smi; None where it does not list it."""
    for index, uuid, free_mb in query():
        if device in (index, uuid):
            return free_mb / 1024
    return None


def lock_dir() -> Path:
    """The machine's lock dir; made world-writable (sticky, like /tmp) so every user's jobs share it."""
    path = Path(os.environ.get("ABLATE_GPU_LOCK_DIR") or "/tmp/ablate-gpu-locks")
    try:
        path.mkdir(parents=True)
        path.chmod(0o1777)
    except FileExistsError:
        pass
    return path


def _try_lock(path: Path) -> int | None:
    # Read-only suffices for flock, so another user's lock file (mode 0644) still locks.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # not inherited by the child (O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _acquire(slots: list[tuple[str, int]], count: int, min_free: float, root: Path) -> tuple[dict[str, int], str]:
    """One pass over the slots: lock ``count`` distinct devices with enough free memory, or none.
    Returns the held lock fds per device (empty when short) and why a device was passed over."""
    held: dict[str, int] = {}
    short = ""
    try:
        for device, slot in slots:
            if len(held) == count:
                break
            if device in held:
                continue
            fd = _try_lock(root / (device.replace("/", "_") + (f".{slot}" if slot else "") + ".lock"))
            if fd is None:
                continue
            free = free_gb(device) if min_free > 0 else min_free
            if free is None:
                os.close(fd)
                raise GpuError(
                    f"ABLATE_MIN_FREE_GB={min_free:g}: nvidia-smi does not report the free memory of GPU {device}; "
                    "unset ABLATE_MIN_FREE_GB where nvidia-smi cannot see the devices"
                )
            if free < min_free:
                os.close(fd)
                short = f"GPU {device} has {free:.1f} GB free"
                continue
            held[device] = fd
    except BaseException:
        for fd in held.values():
            os.close(fd)
        raise
    if len(held) < count:
        for fd in held.values():
            os.close(fd)
        return {}, short
    return held, short


@contextmanager
def pin(label: str, count: int, say: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """Hold ``count`` free devices while the body runs; yields the env the child needs ({} = unpinned)."""
    devices = visible() if count > 0 else []
    if not devices:
        yield {}
        return
    if count > len(devices):
        raise GpuError(f"{label} needs {count} GPUs; only {len(devices)} visible ({','.join(devices)})")
    share = int(_number_env("ABLATE_GPU_SHARE", 1))
    min_free = float(_number_env("ABLATE_MIN_FREE_GB", 0.0, float))
    root, said = lock_dir(), ""
    # Slot-major order: every device's first slot before any second one, so sharing spreads out.
    slots = [(d, s) for s in range(share) for d in devices]
    while True:
        held, short = _acquire(slots, count, min_free, root)
        if len(held) == count:
            break
        why = f"{short}, ABLATE_MIN_FREE_GB={min_free:g}" if short else f"all GPUs ({','.join(devices)}) are held"
        if why != said:
            say(f"{label}: {why}; waiting")
            said = why
        time.sleep(POLL_S)
    try:
        pinned = ",".join(held)
        if said:
            say(f"{label}: got GPU {pinned}")
        yield {"CUDA_VISIBLE_DEVICES": pinned}
    finally:
        for fd in held.values():
            os.close(fd)
