"""report: per size, baseline and PoH params, accuracy, optimality and PoH − baseline
deltas (results.json, table), and the plan's four panels: acc and opt vs params, Δacc and
Δopt per size."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="report", reads=(), needs=("maze_data", "train", "evaluate"), code=("studies.report",), gather=True
)


def run(ctx: Context) -> dict:
    import json

    from studies.report import scaling_panels, write_table

    data = ctx.inputs("maze_data")[0].metrics()
    by = {}
    for cell in ctx.cells:
        train = next(u for u in ctx.inputs("train") if cell in u.cells).metrics()
        test = next(u for u in ctx.inputs("evaluate") if cell in u.cells).metrics()
        by.setdefault(train["size"], {})[train["kind"]] = {
            "params": train["n_params"],
            "acc": test["test_acc"],
            "opt": test["test_opt"],
            "exact_opt": test["test_exact_opt"],
            "wall_s": train["wall_s"],
            "seed": train["seed"],
        }
    results = []
    for size, kinds in by.items():
        b, p = kinds.get("baseline"), kinds.get("poh")
        row = {"size": size, **{f"{k}_{m}": v[m] for k, v in kinds.items() for m in v}}
        if b and p:
            row |= {"poh_minus_baseline_acc": p["acc"] - b["acc"], "poh_minus_baseline_opt": p["opt"] - b["opt"]}
        results.append(row)
    results.sort(key=lambda r: r.get("baseline_params", 0))
    (ctx.out / "results.json").write_text(json.dumps({"data": data, "sizes": results}, indent=1))
    write_table(results, ctx.out / "table", sort_by="size", first=("size",))
    scaling_panels(results, ctx.out / "scaling.png", title=f"{ctx.study}: PoH-HRM vs transformer on mazes")
    return {"sizes": len(results)}
