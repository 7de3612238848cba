"""Backend parity: one backend and precision against the python backend in fp32.

Same random bank and inputs for both (``bench.make_batch``); outputs and the gradients of
qc, kc and v are compared. Low precisions are compared with the fp32 reference computed on
the same rounded inputs, so the figure is the kernel's error, not the input rounding's.
"""

from __future__ import annotations

import torch

from .bench import make_batch
from .kernels import check_precision, set_attend

# What "passes" means, for the tests and the parity report alike: per precision, the largest
# Z error allowed (relative to max |Z| in fp32, absolute in bf16/fp16 as the values are O(1))
# and the largest |gradient-norm ratio − 1|. fp16 is held to bf16's allowance (it keeps more
# mantissa bits, so this is loose for it).
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"z_max_rel_err": 1e-5, "grad_norm_ratio_dev": 1e-5},
    "bf16": {"z_max_abs_err": 0.05, "grad_norm_ratio_dev": 0.02},
    "fp16": {"z_max_abs_err": 0.05, "grad_norm_ratio_dev": 0.02},
}


def within_tolerance(result: dict, precision: str) -> bool:
    """Whether a ``compare`` result meets ``TOLERANCES[precision]`` (finite, Z error and every
    gradient-norm ratio)."""
    if precision not in TOLERANCES:
        raise ValueError(f"precision={precision!r} has no tolerance; known: {sorted(TOLERANCES)}")
    tol = TOLERANCES[precision]
    z_ok = all(result[k] <= v for k, v in tol.items() if k.startswith("z_"))
    ratios = [result[f"grad_{n}_norm_ratio"] for n in ("qc", "kc", "v")]
    return bool(result["finite"]) and z_ok and all(abs(r - 1.0) <= tol["grad_norm_ratio_dev"] for r in ratios)


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
