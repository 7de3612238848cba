"""report: the bridge study's answers, every bridged number beside its floor and controls.

Files (tables as .md/.csv/.tex):
``accuracy``     per cell (seeds pooled: mean, 95 % CI via ``_sd`` and n): test bridged accuracy
                 (official scorer), the controls text / no_bridge / shuffled / a_alone, bridged −
                 no_bridge and bridged − shuffled paired by seed with their 95 % CIs, ``verdict``
                 (``NOT above both controls by a 95 % CI`` unless both CIs lie above 0 with n ≥ 3),
                 the difference from the reference cell, the lenient extractor in its own labelled
                 column, trainable parameters;
``stability``    validation peak, final, peak − final, best and stopping step; plots
                 ``val_curves.png`` (validation accuracy over training) and ``train_curves.png``;
``quantization`` per cell and wire format: bytes mean/min/max, ratio to the question's UTF-8 bytes
                 with the verdict, accuracy after dequantization (mean ± CI) and its change from
                 fp32; plots ``wire_bytes.png``, ``acc_vs_M.png``, ``bytes_vs_M.png``;
``bench``        text vs latent at each batch size, with the machine's load (a caveat: a shared
                 CPU makes wall times noisy); plot ``bench.png``;
``table`` (one row per cell), ``summary`` (every metric), ``ablations``, ``test_bridged_acc.png``
(each mode per cell) and ``findings.txt`` (what the numbers say, in words).
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from pipeline.views import Views
from stages.bridge.evaluate import CONTROLS, MODES

# the plots `dvc plots show` draws (pipeline.views)
VIEWS = Views(
    images=("{report_metric}.png", "wire_bytes.png", "val_curves.png", "train_curves.png", "bench.png"),
    bars=(("summary.csv", "cell", "{report_metric}"),),
)
SPEC = StageSpec(
    name="report",
    reads=("report_metric", "report_replicates", "report_reference"),
    needs=("train", "evaluate", "quantize", "bench"),
    code=("studies.report", "studies.stats", "stages.common.report_rows"),
    gather=True,
    choices={"report_metric": ("test_bridged_acc",)},  # the result; controls are columns beside it
    refers={"report_replicates": "param", "report_reference": "cell"},
)
NOT_ABOVE = "NOT above both controls by a 95 % CI"
FIXED = ("n_params", "steps", "n_test", "n_val", "n_soft_tokens", "text_bytes_mean", "majority_floor_acc")


def control_gaps(rows: list[dict], keys: list[str], replicate: str) -> dict[str, dict]:
    """Per replicate group: bridged − control for each of CONTROLS, paired by seed (difference_ci),
    and the verdict: above both only when both are findings (n ≥ 3, CI above 0)."""
    from studies.report import replicate_groups
    from studies.stats import difference_ci

    out = {}
    for label, members in replicate_groups(rows, keys, replicate).items():
        bridged = {m[replicate]: m["test_bridged_acc"] for m in members}
        gaps, above = {}, True
        for c in CONTROLS:
            d = difference_ci(bridged, {m[replicate]: m[f"test_{c}_acc"] for m in members})
            gaps |= {
                f"bridged_minus_{c}": d["diff"],
                f"bridged_minus_{c}_lo": d["lo"],
                f"bridged_minus_{c}_hi": d["hi"],
            }
            above = above and d["finding"] == "yes" and d["diff"] > 0
        out[label] = gaps | {"verdict": "above both controls (95 % CI)" if above else NOT_ABOVE}
    return out


def across_tasks_left_out(summary: list[dict], ctx: Context, metric: str) -> list[dict]:
    """No difference from the reference for a group of another task: it would subtract SQuAD EM
    from GSM8K accuracy. Such a group is judged only against its own controls (its verdict)."""
    from stages.common.report_rows import reference_params

    task = reference_params(ctx, ctx.params["report_reference"])["task"]
    blank = dict.fromkeys((f"{metric}_diff", f"{metric}_diff_lo", f"{metric}_diff_hi", "ci"))
    return [r if r["task"] == task else r | blank | {"finding": f"n/a (task {r['task']}, not {task})"} for r in summary]


def quantize_rows(ctx: Context, rows: list[dict], keys: list[str], replicate: str) -> list[dict]:
    """One row per (replicate group, wire format): bytes (fixed by the shape) and accuracy after
    dequantization pooled over seeds (mean, s.d., n), its change from fp32 paired by seed."""
    from studies.report import replicate_groups, replicate_summary
    from studies.stats import difference_ci

    per_cell = {}
    for u in ctx.inputs("quantize"):
        for cell in u.cells:
            per_cell[cell] = json.loads((u.path / "wire.json").read_text())
    out = []
    for label, members in replicate_groups(rows, keys, replicate).items():
        formats = [w["format"] for w in per_cell[members[0]["cell"]]]
        for i, fmt in enumerate(formats):
            flat = [
                {"cell": m["cell"], "named": m["named"], **{k: m[k] for k in keys}} | per_cell[m["cell"]][i]
                for m in members
            ]
            (row,) = replicate_summary(flat, keys, replicate, ["acc"], fixed=())
            row.pop("named")
            first = per_cell[members[0]["cell"]][i]
            row |= {k: first[k] for k in ("bytes_mean", "bytes_min", "bytes_max", "text_bytes_mean", "wire_over_text")}
            row |= {"verdict": first["verdict"], "format": fmt, "cell": label, "M": members[0].get("n_soft_tokens")}
            for c in CONTROLS:  # the floor beside the number: the same cells' test controls (mean over seeds)
                row[f"test_{c}_acc"] = sum(m[f"test_{c}_acc"] for m in members) / len(members)
            fp32 = {m[replicate]: m.get("wire_fp32_acc") for m in members}
            if fmt != "fp32" and None not in fp32.values():
                d = difference_ci({m[replicate]: m[f"wire_{fmt}_acc"] for m in members}, fp32)
                row |= {"acc_minus_fp32": d["diff"], "acc_minus_fp32_lo": d["lo"], "acc_minus_fp32_hi": d["hi"]}
            out.append(row)
    return out


def bench_rows(ctx: Context) -> tuple[list[dict], list[dict]]:
    """Every bench node's rows (text rows once: they do not depend on M), and each node's load."""
    rows, loads, seen = [], [], set()
    for u in ctx.inputs("bench"):
        b = json.loads((u.path / "bench.json").read_text())
        loads.append({k: b[k] for k in ("device", "cpu_count", "load_before", "load_after", "new_tokens", "repeats")})
        for r in b["rows"]:
            key = (r["path"], r["M"], r["batch"])
            if key not in seen:
                seen.add(key)
                rows.append(r | {"series": "text" if r["M"] is None else f"latent M={r['M']}"})
    return rows, loads


def modes_plot(summary: list[dict], path, title: str) -> None:
    """Each mode's test accuracy per cell (mean ± s.d. over seeds): the bridged bar among its controls."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(summary) + 2), 4))
    width = 0.8 / len(MODES)
    for j, mode in enumerate(MODES):
        key = f"test_{mode}_acc"
        xs = [i + (j - len(MODES) / 2 + 0.5) * width for i in range(len(summary))]
        ax.bar(xs, [r[key] for r in summary], width, yerr=[r.get(f"{key}_sd") or 0 for r in summary], label=mode)
    ax.set_xticks(
        range(len(summary)), [f"{r['cell']} (n={r['n']})" for r in summary], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylabel("test accuracy (official scorer)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(ctx: Context) -> dict:
    from stages.common.report_rows import cell_rows, compared, write_ablations
    from studies.report import bar_plot, ci_half_width, curves_plot, line_plot, replicate_summary, write_table

    p = ctx.params
    metric, replicate = p["report_metric"], p["report_replicates"]
    keys = list(next(iter(ctx.cells.values()))["params"])
    rows = cell_rows(ctx)
    for r in rows:  # the quantize metrics of the same cell
        q = next(u for u in ctx.inputs("quantize") if r["cell"] in u.cells)
        r |= {k: v for k, v in q.metrics().items() if k not in ("n_test",)}
    numeric = list(
        dict.fromkeys(
            k
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in (*keys, "seed")
        )
    )
    fixed = (*FIXED, *(k for k in numeric if k.startswith("wire_") and "_bytes_" in k or k.endswith("_over_text")))
    summary = replicate_summary(rows, keys, replicate, numeric, fixed=fixed)
    summary = across_tasks_left_out(compared(ctx, summary, rows, keys, replicate, metric), ctx, metric)
    gaps = control_gaps(rows, keys, replicate)
    for row in summary:
        row |= gaps[row["cell"]] | {f"{metric}_ci95": ci_half_width(row.get(f"{metric}_sd"), row["n"])}
    factors = [k for k in keys if k != replicate]
    controls = [f"test_{m}_acc" for m in MODES if m != "bridged"]
    lead = (
        "cell",
        *factors,
        "n",
        metric,
        f"{metric}_sd",
        f"{metric}_ci95",
        *controls,
        "majority_floor_acc",
        *(f"bridged_minus_{c}{s}" for c in CONTROLS for s in ("", "_lo", "_hi")),
        "verdict",
        "test_bridged_distinct",
        f"{metric}_diff",
        f"{metric}_diff_lo",
        f"{metric}_diff_hi",
        "finding",
        "vs",
        "test_bridged_f1",
        "test_bridged_acc_lenient_not_official",
        "n_params",
        "n_test",
    )
    better = {c: None for c in (*controls, "majority_floor_acc")} | {metric: "max", "test_bridged_distinct": None}
    accuracy = [{k: r.get(k) for k in lead} | {f"{c}_sd": r.get(f"{c}_sd") for c in controls} for r in summary]
    accuracy = [{k: v for k, v in r.items() if any(x.get(k) is not None for x in accuracy)} for r in accuracy]
    write_table(accuracy, ctx.out / "accuracy", sort_by=metric, first=lead, descending=True, better=better)
    stab = ("val_peak", "val_final", "val_degradation", "val_last", "best_step", "stopped_step", "steps")
    beside = (metric, *(f"test_{c}_acc" for c in CONTROLS))  # what the kept state scores on test, with its floors
    stability = [{k: r.get(k) for k in ("cell", *factors, "n", *stab, *beside)} for r in summary]
    stability = [
        r | {f"{k}_sd": s.get(f"{k}_sd") for k in (*stab[:4], *beside)} for r, s in zip(stability, summary, strict=True)
    ]
    write_table(stability, ctx.out / "stability", sort_by="cell", better={"val_degradation": "min"})
    flat = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    write_table(flat, ctx.out / "table", sort_by=metric, first=("cell",), descending=True, better=better)
    write_table(summary, ctx.out / "summary", sort_by=metric, first=lead, descending=True, better=better)
    write_ablations(ctx, rows, summary, replicate, metric, goal="max")

    wire = quantize_rows(ctx, rows, keys, replicate)
    wire_lead = ("cell", "format", "n", "M", "bytes_mean", "bytes_min", "bytes_max", "text_bytes_mean")
    wire_first = (*wire_lead, "wire_over_text", "verdict", "acc", "acc_sd", *(f"test_{c}_acc" for c in CONTROLS))
    write_table(wire, ctx.out / "quantization", sort_by="cell", first=wire_first, better={"acc": None})
    base_wire = [w for w in wire if w["cell"] == summary[0]["cell"]]
    bar_plot(
        [{"cell": w["format"], "named": False, "bytes_mean": w["bytes_mean"], "n": w["n"]} for w in base_wire],
        "bytes_mean",
        ctx.out / "wire_bytes.png",
        title=f"{ctx.study}: payload bytes per soft-token set ({summary[0]['cell']})",
        floors={"question UTF-8 bytes": base_wire[0]["text_bytes_mean"]},
    )
    series = tuple(f for f in factors if f != "n_soft_tokens")  # none: one line
    by_m = [r | {"M": r["n_soft_tokens"]} for r in summary]
    line_plot(by_m, "M", metric, series, ctx.out / "acc_vs_M.png", f"{ctx.study}: bridged accuracy vs soft tokens M")
    line_plot(
        wire, "M", "bytes_mean", ("format",), ctx.out / "bytes_vs_M.png", f"{ctx.study}: wire bytes vs M", logy=True
    )

    val = [
        {"cell": r["cell"], "step": h["step"], "val_acc": h["val_acc"]}
        for r in rows
        for h in json.loads(
            (next(u for u in ctx.inputs("train") if r["cell"] in u.cells).path / "val_history.json").read_text()
        )
    ]
    line_plot(
        val, "step", "val_acc", ("cell",), ctx.out / "val_curves.png", f"{ctx.study}: validation bridged accuracy"
    )
    curves_plot(rows, ctx.out / "train_curves.png", ctx.study)
    modes_plot(summary, ctx.out / f"{metric}.png", f"{ctx.study}: test accuracy per mode (official scorer)")

    bench, loads = bench_rows(ctx)
    write_table(bench, ctx.out / "bench", sort_by="batch", first=("series", "batch", "ms_per_sample", "samples_per_s"))
    line_plot(bench, "batch", "ms_per_sample", ("series",), ctx.out / "bench.png", f"{ctx.study}: latency per sample")

    (ctx.out / "findings.txt").write_text(narrative(ctx.study, summary, wire, loads, metric))
    above = sum(r["verdict"] != NOT_ABOVE for r in summary)
    best = max(summary, key=lambda r: r[metric])
    return {"cells": len(rows), "groups": len(summary), "groups_above_controls": above, f"best_{metric}": best[metric]}


def narrative(study: str, summary: list[dict], wire: list[dict], loads: list[dict], metric: str) -> str:
    """report.md: each group's bridged accuracy beside its controls and verdict, the wire's cost, the load caveat."""

    def pct(v) -> str:
        return "--" if v is None else f"{100 * v:.1f} %"

    def ci(lo, hi, n) -> str:
        """The 95 % CI; a zero-width one means every seed gave the same difference: say so."""
        if lo is not None and lo == hi:
            return f"(all {n} seeds equal: no spread to estimate a CI from)"
        return f"[{pct(lo)}, {pct(hi)}]"

    def below_floor(r) -> str:
        """Beating the controls is not enough where always giving the commonest answer does better."""
        if r[metric] > r["majority_floor_acc"]:
            return ""
        return f", but **not above the majority-answer floor** ({pct(r['majority_floor_acc'])}): no working bridge"

    lines = [f"# {study}", "", "## Accuracy (test split, official scorer; mean over seeds)", ""]
    for r in summary:
        gaps = ", ".join(
            f"bridged − {c} {pct(r[f'bridged_minus_{c}'])} "
            f"{ci(r[f'bridged_minus_{c}_lo'], r[f'bridged_minus_{c}_hi'], r['n'])}"
            for c in CONTROLS
        )
        lines.append(
            f"- {r['cell']} (n={r['n']}): bridged {pct(r[metric])}; text {pct(r['test_text_acc'])}, no_bridge "
            f"{pct(r['test_no_bridge_acc'])}, shuffled {pct(r['test_shuffled_acc'])}, "
            f"A alone {pct(r['test_a_alone_acc'])}; majority-answer floor {pct(r['majority_floor_acc'])}; "
            f"{gaps}: **{r['verdict']}**{below_floor(r)}. Bridged mode gave {r['test_bridged_distinct']:.1f} distinct answers "
            f"(mean over seeds) to {r['n_test']:.0f} test questions."
        )
    if all(r["verdict"] == NOT_ABOVE for r in summary):
        lines += [
            "",
            "No cell's bridged accuracy is above both controls by a 95 % CI: this build shows no working bridge.",
        ]
    lines += ["", "## Wire (per example; ratio to the question's UTF-8 bytes)", ""]
    lines += [
        f"- {w['cell']} {w['format']}: {w['bytes_mean']:.0f} B, {w['verdict']}; accuracy {pct(w['acc'])}" for w in wire
    ]
    lines += ["", "## Benchmark caveat", ""]
    for ld in loads:
        lines.append(
            f"- {ld['device']}, {ld['cpu_count']} CPUs, 1-min load {ld['load_before']:.1f} → {ld['load_after']:.1f}, "
            f"{ld['new_tokens']} new tokens, median of {ld['repeats']}: wall times on a shared machine are noisy."
        )
    return "\n".join(lines) + "\n"
