"""report: one line per cell."""

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=("title",), needs=("power",), gather=True)


def run(ctx: Context) -> dict:
    lines = [ctx.params["title"]]
    for cell in sorted(ctx.cells):
        up = next(u for u in ctx.inputs("power") if cell in u.cells)
        lines.append(f"{cell}: {up.metrics()['total']}")
    (ctx.out / "table.txt").write_text("\n".join(lines) + "\n")
    return {"cells": len(ctx.cells)}
