"""SKA kernel backends behind one interface; ``python`` is the reference.

Every backend implements exactly

    set_attend(sig, size, end, valid, qc, kc, v, *, gamma, beta, tau, eta, score_mode, causal)
        -> Z [B, S, Dv]

(see ``python.py`` for the function they must all compute). Backends register themselves in
``BACKENDS``; asking for a name that is not there is an error naming the ones that are, never
a silent fallback to python.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import python
from .python import SCORE_MODES

BACKENDS: dict[str, Callable[..., Tensor]] = {"python": python.set_attend}


def register_backend(name: str, fn: Callable[..., Tensor]) -> None:
    """Add a backend (e.g. keops, triton) once its module imports cleanly."""
    BACKENDS[name] = fn


def get_backend(name: str) -> Callable[..., Tensor]:
    """The backend called ``name``; ValueError naming the available ones otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown SKA backend {name!r}; available: {', '.join(sorted(BACKENDS))}") from None


def set_attend(sig, size, end, valid, qc, kc, v, *, backend: str = "python", **kw) -> Tensor:
    """Dispatch to ``backend``; keywords: gamma, beta, tau, eta, score_mode, causal."""
    return get_backend(backend)(sig, size, end, valid, qc, kc, v, **kw)


__all__ = ["BACKENDS", "SCORE_MODES", "get_backend", "register_backend", "set_attend"]
