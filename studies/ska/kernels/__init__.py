"""SKA kernel backends behind one interface; ``python`` is the reference.

Every backend implements exactly

    set_attend(sig, size, end, valid, qc, kc, v, *, gamma, beta, tau, eta, score_mode, causal)
        -> Z [B, S, Dv]

(see ``python.py`` for the function they must all compute): ``python`` (the reference, S×S
scores), ``keops`` (``keops.py``: streamed KeOps reductions) and ``triton`` (``triton_kernel.py``:
blockwise online-softmax kernels, forward and backward). ``BACKENDS`` names all three; keops
and triton are imported on their first call only (pykeops and triton are slow to import), so
importing this package never imports them. Asking for a name that is not there, or for a
precision a backend lacks (``SUPPORTED``), is an error naming what exists, never a silent
fallback to python.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

from . import python
from .python import SCORE_MODES

# precision name -> dtype of qc, kc, v (and of Z); every backend accumulates in float32
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# backend -> precisions it computes. python: any, by upcasting to float32 inside. keops: float32
# only (KeOps has no bfloat16; its float16 runs on GPUs only and would hold the signature codes
# and masks in half precision, inexact beyond 2048). triton: all three (fp32 dots in IEEE
# precision; fp16/bf16 tensor-core dots with fp32 accumulation) — on CPU only through Triton's
# interpreter (TRITON_INTERPRET=1), which is for tests.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "python": ("fp32", "fp16", "bf16"),
    "keops": ("fp32",),
    "triton": ("fp32", "fp16", "bf16"),
}

_LAZY = {"keops": "keops", "triton": "triton_kernel"}  # backend -> module, imported on first use


class _LazyBackend:
    """Imports ``studies.ska.kernels.<module>`` (pykeops, triton: slow) on its first call."""

    def __init__(self, name: str, module: str):
        self.name, self.module, self._fn = name, module, None

    def load(self) -> Callable[..., Tensor]:
        if self._fn is None:
            try:
                mod = importlib.import_module(f"{__name__}.{self.module}")
            except ImportError as err:
                raise ValueError(
                    f"SKA backend {self.name!r} cannot be imported here ({err}); "
                    f"available: {', '.join(_available_names(exclude=self.name))}"
                ) from err
            self._fn = mod.set_attend
        return self._fn

    def __call__(self, *args, **kw) -> Tensor:
        return self.load()(*args, **kw)

    def __repr__(self) -> str:
        return f"<SKA backend {self.name!r} ({'loaded' if self._fn else 'not imported yet'})>"


BACKENDS: dict[str, Callable[..., Tensor]] = {"python": python.set_attend}
BACKENDS.update({name: _LazyBackend(name, module) for name, module in _LAZY.items()})


def _available_names(exclude: str | None = None) -> list[str]:
    return [name for name in BACKENDS if name != exclude]  # python first: the reference


def register_backend(name: str, fn: Callable[..., Tensor]) -> None:
    """Add a backend (e.g. keops, triton) once its module imports cleanly."""
    BACKENDS[name] = fn


def get_backend(name: str) -> Callable[..., Tensor]:
    """The backend called ``name``; ValueError naming the available ones otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown SKA backend {name!r}; available: {', '.join(_available_names())}") from None


def supported_combinations() -> str:
    """'python: fp32, fp16, bf16; keops: fp32; ...' — what exists, for error messages."""
    return "; ".join(f"{b}: {', '.join(p)}" for b, p in SUPPORTED.items())


def check_precision(backend: str, precision: str) -> torch.dtype:
    """dtype of ``precision`` if ``backend`` supports it; ValueError naming what exists otherwise."""
    get_backend(backend)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
    if precision not in SUPPORTED.get(backend, ()):
        raise ValueError(
            f"SKA backend {backend!r} does not support precision {precision!r}; "
            f"supported combinations: {supported_combinations()}"
        )
    return PRECISIONS[precision]


def precision_of(dtype: torch.dtype) -> str | None:
    """'fp32' | 'fp16' | 'bf16' for those dtypes, None for any other."""
    return next((name for name, d in PRECISIONS.items() if d == dtype), None)


def set_attend(sig, size, end, valid, qc, kc, v, *, backend: str = "python", precision: str | None = None, **kw):
    """Dispatch to ``backend``; keywords: gamma, beta, tau, eta, score_mode, causal.

    ``precision`` (fp32 | fp16 | bf16) casts qc, kc and v to that dtype first (Z comes back in
    it); None keeps their dtype and checks that the backend supports it. An unsupported
    combination is a ValueError naming the supported ones, never a silent fallback.
    """
    fn = get_backend(backend)
    if precision is None:
        precision = precision_of(v.dtype)
        if precision is None:  # e.g. float64: the python reference takes it as it is
            if backend != "python":
                raise ValueError(
                    f"SKA backend {backend!r} got values of dtype {v.dtype}; "
                    f"supported combinations: {supported_combinations()}"
                )
            return fn(sig, size, end, valid, qc, kc, v, **kw)
    dtype = check_precision(backend, precision)
    qc, kc, v = (None if t is None else t.to(dtype) for t in (qc, kc, v))
    return fn(sig, size, end, valid, qc, kc, v, **kw)


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "SCORE_MODES",
    "SUPPORTED",
    "check_precision",
    "get_backend",
    "precision_of",
    "register_backend",
    "set_attend",
    "supported_combinations",
]
