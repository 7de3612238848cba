"""report: the backend-parity table (max abs error, gradient-norm ratio vs python fp32)."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=(), needs=("parity",), code=("studies.report",), gather=True)


def run(ctx: Context) -> dict:
    from studies.report import write_table

    rows = [u.metrics() for u in ctx.inputs("parity")]
    write_table(
        rows, ctx.out / "parity", sort_by="z_max_abs_err", first=("backend", "precision", "device"), digits=None
    )
    return {"rows": len(rows), "worst_z_max_abs_err": max(r["z_max_abs_err"] for r in rows)}
