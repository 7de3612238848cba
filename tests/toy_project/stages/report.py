"""report: one line per cell (its total, or the state of a cell that did not finish), also as a
markdown table."""

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=("title",), needs=("power",), gather=True)


def run(ctx: Context) -> dict:
    lines, rows = [ctx.params["title"]], ["| cell | total | state |", "|------|-------|-------|"]
    for cell in sorted(ctx.cells):
        state = ctx.cells[cell].get("state")
        total = "" if state else next(u for u in ctx.inputs("power") if cell in u.cells).metrics()["total"]
        lines.append(f"{cell}: {state or total}")
        rows.append(f"| {cell} | {total} | {state or 'done'} |")
    (ctx.out / "table.txt").write_text("\n".join(lines) + "\n")
    (ctx.out / "table.md").write_text("\n".join(rows) + "\n")
    return {"cells": len(ctx.cells)}
