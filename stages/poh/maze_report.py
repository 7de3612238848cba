"""report: per (size, kind) over seeds: trainable params, test accuracy, optimality, exact
optimality and junction accuracy (mean ± s.d., n), whether training was still improving,
PoH − baseline per size with its 95 % CI, and the floors beside them: the greedy roll-out
on random scores (``random_acc``, ``random_opt``) and junction chance. ``table`` has a row
per (size, kind), ``results.json`` also the per-size deltas; ``scaling.png`` the plan's four
panels (acc and opt vs params with the floors, Δacc and Δopt per size with CIs).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from pipeline.views import Views

SPEC = StageSpec(
    name="report",
    reads=(),
    needs=("maze_data", "train", "evaluate"),
    code=("studies.report", "studies.stats"),
    gather=True,
)
# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(images=("scaling.png",))
REPLICATE = "train_seed"  # cells differing only in this param are averaged
METRICS = ("acc", "opt", "exact_opt", "junction_acc", "len_ratio")
FLOORS = ("random_acc", "random_opt", "junction_chance")
FIXED = ("n_params", *FLOORS, "steps")  # the same for every seed: no s.d.
# the .tex tables' bold best: optimality rates are higher-better; a floor is no result to mark
BETTER = {"opt": "max", "exact_opt": "max", **dict.fromkeys(FLOORS)}
LEAD = (
    *("size", "kind", "n", "n_params"),
    *(f"{m}{s}" for m in ("acc", "opt") for s in ("", "_sd", "_diff", "_diff_lo", "_diff_hi", "_finding")),
    *("exact_opt", "junction_acc", "junction_chance", "random_acc", "random_opt", "still_improving"),
)


def run(ctx: Context) -> dict:
    import json

    from stages.common.report_rows import cell_rows, state_rows
    from studies.report import compare_with_reference, replicate_summary, scaling_panels, write_table

    data = ctx.inputs("maze_data")[0].metrics()
    keys = list(next(iter(ctx.cells.values()))["params"])
    rows = [
        {("n_test" if k == "test_n" else k.removeprefix("test_")): v for k, v in r.items() if k != "curve"}
        for r in cell_rows(ctx)
    ]
    summary = replicate_summary(rows, keys, REPLICATE, [*METRICS, *FIXED, "best_step", "wall_s"], fixed=FIXED)
    table = []
    for size in sorted({r["size"] for r in summary}):
        part = [r for r in summary if r["size"] == size]
        baseline = next((r for r in part if r["kind"] == "baseline"), None)
        for metric in ("acc", "opt"):
            if baseline is not None:  # PoH − baseline of the same size, paired by seed
                ref = {k: baseline[k] for k in keys if k != REPLICATE}
                part = compare_with_reference(part, rows, keys, REPLICATE, metric, ref)
                for r in part:  # one verdict per metric
                    r[f"{metric}_ci"], r[f"{metric}_finding"] = r.pop("ci"), r.pop("finding")
        table += part
    table.sort(key=lambda r: (r.get("n_params") or 0, r["kind"]))
    for r in table:
        r.pop("vs", None)
        r.pop("named")
    unfinished = [{k: v for k, v in r.items() if k != "named"} for r in state_rows(ctx)]
    write_table(table + unfinished, ctx.out / "table", sort_by="size", first=("cell", "state", *LEAD), better=BETTER)
    deltas = [
        {
            "size": r["size"],
            "n": r["n"],
            **{f"poh_minus_baseline_{m}{s}": r.get(f"{m}_diff{s}") for m in ("acc", "opt") for s in ("", "_lo", "_hi")},
            **{f"{m}_finding": r.get(f"{m}_finding") for m in ("acc", "opt")},
        }
        for r in table
        if r["kind"] == "poh" and r.get("acc_diff") is not None
    ]
    floors = {
        "acc": {"random scores": sum(r["random_acc"] for r in table) / len(table)},
        "opt": {"random scores": sum(r["random_opt"] for r in table) / len(table)},
    }
    (ctx.out / "results.json").write_text(json.dumps({"data": data, "rows": table, "sizes": deltas}, indent=1))
    scaling_panels(table, ctx.out / "scaling.png", title=f"{ctx.study}: PoH-HRM vs transformer on mazes", floors=floors)
    return {"sizes": len({r["size"] for r in table}), "groups": len(table)}
