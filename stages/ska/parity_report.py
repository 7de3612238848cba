"""report: the backend-parity table (max abs error, gradient-norm ratio vs python fp32), with
``pass`` against the tolerances the tests use (``studies.ska.parity.TOLERANCES``)."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=(), needs=("parity",), code=("studies.report", "studies.ska.parity"), gather=True)


def run(ctx: Context) -> dict:
    from studies.report import write_table
    from studies.ska.parity import TOLERANCES, within_tolerance

    rows = []
    for u in ctx.inputs("parity"):
        m = u.metrics()
        tol = ", ".join(f"{k} ≤ {v:g}" for k, v in TOLERANCES[m["precision"]].items())
        rows.append({**m, "pass": "yes" if within_tolerance(m, m["precision"]) else "no", "tolerance": tol})
    write_table(
        rows,
        ctx.out / "parity",
        sort_by="z_max_abs_err",
        first=("backend", "precision", "device", "pass", "tolerance"),
        digits=None,
    )
    return {
        "rows": len(rows),
        "passed": sum(r["pass"] == "yes" for r in rows),
        "worst_z_max_abs_err": max(r["z_max_abs_err"] for r in rows),
    }
