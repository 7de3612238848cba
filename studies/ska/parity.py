"""Backend parity: one backend and precision against the python backend in fp32.

Same random bank and inputs for both (``bench.make_batch``); outputs and the gradients of
qc, kc and v are compared. Low precisions are compared with the fp32 reference computed on
the same rounded inputs, so the figure is the kernel's error, not the input rounding's.
"""

from __future__ import annotations

import torch

from .bench import make_batch
from .kernels import check_precision, set_attend


def _run(backend, precision, fixed, x, w, device, **kw):
    dtype = check_precision(backend, precision)
    leaves = [t.detach().clone().to(device, dtype).requires_grad_(True) for t in x]  # fresh leaves per run
    z = set_attend(*[t.to(device) for t in fixed], *leaves, backend=backend, precision=precision, **kw)
    (z.float() * w.to(device)).sum().backward()
    return z.detach().float().cpu(), [t.grad.float().cpu() for t in leaves]


def compare(
    backend: str,
    precision: str,
    *,
    B: int,
    L: int,
    D: int,
    k: int,
    window: int,
    stride: int,
    score_mode: str,
    causal: bool,
    seed: int,
    device: str = "cpu",
) -> dict:
    """Max abs and relative error of Z, and per-gradient max abs error and norm ratio."""
    fixed, x, w, stats = make_batch(B, L, D, k, window, stride, seed=seed)
    dtype = check_precision(backend, precision)
    x = [t.to(dtype).float() for t in x]  # the inputs both sides see
    kw = dict(gamma=0.3, beta=1.0 / D, tau=1.0, eta=1.0, score_mode=score_mode, causal=causal)
    z_ref, g_ref = _run("python", "fp32", fixed, x, w, "cpu", **kw)
    z, g = _run(backend, precision, fixed, x, w, device, **kw)
    out = {
        "finite": bool(torch.isfinite(z).all() and all(torch.isfinite(t).all() for t in g)),
        "z_max_abs_err": (z - z_ref).abs().max().item(),
        "z_max_rel_err": ((z - z_ref).abs().max() / z_ref.abs().max().clamp(min=1e-12)).item(),
        **stats,
    }
    for name, a, b in zip(("qc", "kc", "v"), g, g_ref, strict=True):
        out[f"grad_{name}_max_abs_err"] = (a - b).abs().max().item()
        out[f"grad_{name}_norm_ratio"] = (a.norm() / b.norm().clamp(min=1e-12)).item()
    return out
