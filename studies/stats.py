"""Small-sample statistics for the reports: Student-t quantiles and the 95 % confidence
interval of a difference of means (paired by seed, or Welch), without scipy.

Why here: a table of means over two or three seeds says little unless each difference from
the reference comes with its interval and n; these helpers decide when a row may be called a
finding (n ≥ 3 on both sides and the interval excluding 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FINDING_MIN_N = 3  # replicates needed on each side before a difference is called a finding


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` > 0 degrees of freedom (df need not be an integer)."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on t_cdf)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p!r}, df={df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _mean_var(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, sum((v - m) ** 2 for v in values) / (len(values) - 1)


def difference_ci(a: Mapping, b: Mapping, level: float = 0.95) -> dict:
    """Mean of ``a`` minus mean of ``b`` with its ``level`` confidence interval.

    ``a`` and ``b`` map a replicate id (the seed) to a value. With the same ids on both sides
    the interval is the paired t-interval of the per-seed differences; otherwise Welch's. With
    fewer than 2 values on a side the interval is missing (None). Returns ``diff``, ``lo``,
    ``hi``, ``ci`` (paired | welch | None), ``n_a``, ``n_b`` and ``finding`` (yes/no).
    """
    va, vb = [float(v) for v in a.values()], [float(v) for v in b.values()]
    out = {"diff": None, "lo": None, "hi": None, "ci": None, "n_a": len(va), "n_b": len(vb), "finding": "no"}
    if not va or not vb:
        return out
    out["diff"] = sum(va) / len(va) - sum(vb) / len(vb)
    if len(va) < 2 or len(vb) < 2:
        return out
    q = (1.0 + level) / 2.0
    if set(a) == set(b):
        d = [float(a[k]) - float(b[k]) for k in a]
        m, var = _mean_var(d)
        half = t_quantile(q, len(d) - 1) * math.sqrt(var / len(d))
        out |= {"lo": m - half, "hi": m + half, "ci": "paired"}
    else:
        (_, var_a), (_, var_b) = _mean_var(va), _mean_var(vb)
        sa, sb = var_a / len(va), var_b / len(vb)
        se = math.sqrt(sa + sb)
        if se == 0.0:  # both sides constant: the difference is exact
            half = 0.0
        else:
            df = (sa + sb) ** 2 / (sa**2 / (len(va) - 1) + sb**2 / (len(vb) - 1))
            half = t_quantile(q, df) * se
        out |= {"lo": out["diff"] - half, "hi": out["diff"] + half, "ci": "welch"}
    big_enough = min(len(va), len(vb)) >= FINDING_MIN_N
    out["finding"] = "yes" if big_enough and (out["lo"] > 0 or out["hi"] < 0) else "no"
    return out
