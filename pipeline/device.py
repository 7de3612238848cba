"""Where stages compute: ``ABLATE_DEVICE=auto|cpu|cuda`` (default ``auto``).

An execution setting, not a param: it never enters a fingerprint, so an artifact built on a
GPU and one built on a CPU share a store entry (what differs is recorded in meta.json as
``device``). ``auto`` is CUDA when torch sees a device, else the CPU; ``cuda`` with no CUDA
device is an error before any work. torch is imported only to resolve ``auto``/``cuda``,
never to check the value itself, and ``auto`` on a machine without a GPU driver's device
files does not import it (a stage that never uses torch stays as cheap as before).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DRIVER_FILES = ("/dev/nvidiactl", "/dev/kfd")  # NVIDIA's and ROCm's: torch.cuda needs one of them

CHOICES = ("auto", "cpu", "cuda")


def requested() -> str:
    """The validated ``ABLATE_DEVICE`` value (``auto`` when unset or empty)."""
    value = os.environ.get("ABLATE_DEVICE", "") or "auto"
    if value not in CHOICES:
        raise ValueError(f"ABLATE_DEVICE={value!r} is not one of {', '.join(CHOICES)}")
    return value


def unavailable() -> str | None:
    """Why the requested device cannot be used here, or None when it can."""
    if requested() != "cuda":
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return "ABLATE_DEVICE=cuda but torch sees no CUDA device (use ABLATE_DEVICE=cpu or auto)"


def resolve() -> str:
    """The concrete torch device the stages run on: ``cuda`` or ``cpu``."""
    problem = unavailable()
    if problem:
        raise RuntimeError(problem)
    if requested() == "cpu":
        return "cpu"
    if "torch" not in sys.modules and not any(Path(f).exists() for f in DRIVER_FILES):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe(device: str) -> str:
    """What meta.json records: ``cpu`` or e.g. ``cuda:0 (NVIDIA H200)``."""
    if not device.startswith("cuda"):
        return device
    import torch

    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
