"""report: the plan's two tables and the throughput/memory-vs-length curves.

(A) naive vs naive: plain matmul+softmax attention vs SKA python, both fp32.
(B) optimized vs optimized: SDPA vs the fastest optimized SKA backend measured (triton
where a GPU ran it, keops on the CPU); the table names the backend and precision used.
Each table holds both scopes measured: the attention kernel alone and the whole block.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SPEC = StageSpec(name="report", reads=(), needs=("bench",), code=("studies.report",), gather=True)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(images=("steps_per_s_vs_length.png", "peak_mem_mb_vs_length.png"))
COLUMNS = (
    "backend",
    "precision",
    "scope",
    "device",
    "L",
    "ms_per_step",
    "steps_per_s",
    "peak_mem_mb",
    "B",
    "H",
    "D",
    "k",
    "avg_sets_per_seq",
    "avg_set_size",
    "wall_s",
)


MEASURED = "{columns}: measured by the bench stage, each configuration run alone on the machine (no other job)"


def run(ctx: Context) -> dict:
    from studies.labels import short_label
    from studies.report import line_plot, write_table

    rows = [{c: u.metrics().get(c) for c in COLUMNS} for u in ctx.inputs("bench")]
    write_table(rows, ctx.out / "bench", sort_by="L", first=COLUMNS[:5], timing_note=MEASURED)
    naive = [r for r in rows if (r["backend"], r["precision"]) in (("naive", "fp32"), ("python", "fp32"))]
    write_table(naive, ctx.out / "naive_vs_naive", sort_by="L", first=COLUMNS[:5], timing_note=MEASURED)
    optimized = [b for b in ("triton", "keops") if any(r["backend"] == b for r in rows)]
    chosen = [r for r in rows if r["backend"] == "sdpa" or (optimized and r["backend"] == optimized[0])]
    write_table(chosen, ctx.out / "optimized_vs_optimized", sort_by="L", first=COLUMNS[:5], timing_note=MEASURED)
    for metric, log in (("steps_per_s", False), ("peak_mem_mb", True)):
        line_plot(
            rows,
            x="L",
            y=metric,
            series=("backend", "precision", "scope"),
            path=ctx.out / f"{metric}_vs_length.png",
            title=f"{ctx.study}: {short_label(metric)} vs sequence length (benchmark, run alone)",
            logy=log,
        )
    return {"rows": len(rows), "optimized_backend": optimized[0] if optimized else None}
