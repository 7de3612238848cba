"""Parameter parity: shrink a PoH model's width until it has about the baseline's parameters.

The scaling study (Eran-BA/PoT, parameter_scaling_benchmark) compares PoH-HRM and a standard
transformer at equal parameter count. The PoH model keeps the baseline's depth and heads (its
extra parameters are the controller) and gets a smaller width d' (a multiple of n_heads, with
d_ff = round(d_ff_ratio · d')), chosen as the count closest to the target among widths
within ``tol`` (10%). Models are built on the ``meta`` device, so counting a 100M-parameter
model allocates no weight memory.
"""

from collections.abc import Callable

import torch
from torch import nn


def count_params(make: Callable[[], nn.Module]) -> int:
    """Parameters of ``make()``, built on the meta device (no weight memory)."""
    with torch.device("meta"):
        model = make()
    return sum(p.numel() for p in model.parameters())


def match_width(
    make_poh: Callable[[int, int], nn.Module],
    target_params: int,
    n_heads: int,
    depth: int,
    d_ff_ratio: float,
    tol: float = 0.10,
    max_width: int = 1 << 15,
) -> tuple[int, int, int]:
    """→ (d_model, d_ff, n_params) of the PoH width whose count is closest to the target.

    ``make_poh(d_model, d_ff)`` must build the PoH model with the given ``n_heads`` and
    ``depth`` (both fixed; they are named here to state the contract and in errors). The
    count grows with width, so an exponential then binary search finds the widths either
    side of the target.
    """
    if target_params <= 0 or n_heads <= 0 or depth <= 0 or d_ff_ratio <= 0 or not 0 < tol < 1:
        raise ValueError(
            f"need target_params, n_heads, depth, d_ff_ratio > 0 and 0 < tol < 1; got "
            f"{target_params}, {n_heads}, {depth}, {d_ff_ratio}, {tol}"
        )

    def at(m: int) -> tuple[int, int, int]:  # width multiple m → (d, d_ff, count)
        d = m * n_heads
        d_ff = max(1, round(d_ff_ratio * d))
        return d, d_ff, count_params(lambda: make_poh(d, d_ff))

    lo, hi = 1, 1  # find the smallest m with count >= target
    while at(hi)[2] < target_params:
        lo, hi = hi, hi * 2
        if hi * n_heads > max_width:
            raise ValueError(
                f"no PoH width up to {max_width} (n_heads={n_heads}, depth={depth}) reaches "
                f"{target_params:,} parameters"
            )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid)[2] < target_params else (lo, mid)
    best = min((at(m) for m in {lo, hi}), key=lambda c: abs(c[2] - target_params))
    if abs(best[2] - target_params) > tol * target_params:
        raise ValueError(
            f"closest PoH width d={best[0]} (n_heads={n_heads}, depth={depth}) has {best[2]:,} "
            f"parameters, more than {tol:.0%} from the target {target_params:,}"
        )
    return best
