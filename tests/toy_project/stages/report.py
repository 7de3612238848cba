"""report: one line per cell (its total, or the state of a cell that did not finish), also as a
markdown and a CSV table, and a bar chart of the totals (a PNG written without a plotting library,
so the toy stays fast)."""

import struct
import zlib

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SPEC = StageSpec(name="report", reads=("title",), needs=("power",), gather=True)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(images=("totals.png",), bars=(("table.csv", "cell", "total"),))


def run(ctx: Context) -> dict:
    lines, rows = [ctx.params["title"]], ["| cell | total | state |", "|------|-------|-------|"]
    csv, totals = ["cell,total,state"], {}
    for cell in sorted(ctx.cells):
        state = ctx.cells[cell].get("state")
        total = "" if state else next(u for u in ctx.inputs("power") if cell in u.cells).metrics()["total"]
        totals[cell] = total or 0
        lines.append(f"{cell}: {state or total}")
        rows.append(f"| {cell} | {total} | {state or 'done'} |")
        csv.append(f'"{cell}",{total},{state or "done"}')  # a grid cell's name holds commas
    (ctx.out / "table.txt").write_text("\n".join(lines) + "\n")
    (ctx.out / "table.md").write_text("\n".join(rows) + "\n")
    (ctx.out / "table.csv").write_text("\n".join(csv) + "\n")
    (ctx.out / "totals.png").write_bytes(bar_png(list(totals.values())))
    return {"cells": len(ctx.cells), "max_total": max(totals.values())}


def bar_png(values: list[float], height: int = 20) -> bytes:
    """A grey-scale PNG with one 2-pixel column per value, as tall as the value's share of the largest."""
    top = max(values) or 1
    pixels = [[0 if height - y <= height * v / top else 255 for v in values for _ in (0, 1)] for y in range(height)]
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 2 * len(values), height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
