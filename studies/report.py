"""Tables and plots for ablation reports: polars for tables, matplotlib for figures."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from studies.stats import difference_ci, t_quantile  # noqa: E402

# Which way a column is better, by its last word (``test_cell_acc``, ``eps_mse``, ``val_loss``); a
# derived column (``acc_sd``, ``ppl_diff``) ends in another word and has none. A caller's ``better``
# overrides it: the report's own goal, or None for a floor such as ``random_acc``.
LOWER_IS_BETTER = frozenset({"perplexity", "ppl", "mse", "fid", "loss"})
HIGHER_IS_BETTER = frozenset({"acc", "accuracy", "top1", "top5", "recall"})
SIGNIFICANT = 4  # LaTeX digits of a table written with digits=None (the markdown: unrounded)
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "×": r"$\times$",
    "±": r"$\pm$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "−": r"$-$",
    "→": r"$\to$",
    "ε": r"$\varepsilon$",
    "Δ": r"$\Delta$",
}


def better_of(column: str, better: dict[str, str | None] | None = None) -> str | None:
    """``min``, ``max`` or None (no best to mark) for ``column``: ``better`` first, else its last word."""
    if better and column in better:
        return better[column]
    last = column.rsplit("_", 1)[-1]
    return "min" if last in LOWER_IS_BETTER else "max" if last in HIGHER_IS_BETTER else None


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode: specials escaped, the report's few math symbols as math."""
    return "".join(LATEX_SPECIALS.get(c, c) for c in text)


def _number(value: float | int, digits: int | None, whole: bool) -> str:
    """A number for math mode: ``digits`` decimals (None: ``SIGNIFICANT`` significant digits, for
    values too small for fixed decimals, such as parity errors; ``whole``: none), an exponent as × 10^k."""
    if not math.isfinite(value):
        return rf"\mathrm{{{value}}}"
    text = str(round(value)) if whole else f"{value:.{SIGNIFICANT}g}" if digits is None else f"{value:.{digits}f}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def _is_count(column: pl.Series) -> bool:
    """Printed without decimals: an integer column, or whole floats beyond 1 (parameter and
    step counts averaged over seeds); whole values within [-1, 1] are rates (accuracy 0 or 1)."""
    values = column.drop_nulls()
    if column.dtype.is_integer():
        return True
    return len(values) > 0 and all(float(v).is_integer() for v in values) and values.abs().max() > 1


def ci_half_width(sd: float | None, n: int | None, level: float = 0.95) -> float | None:
    """Half the ``level`` CI of a mean of ``n`` seeds with sample s.d. ``sd`` (Student t); None
    below two seeds: one run says nothing about spread (never ± 0)."""
    if sd is None or n is None or n < 2:
        return None
    return t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)


def latex_table(df: pl.DataFrame, digits: int | None = 4, better: dict[str, str | None] | None = None) -> str:
    """``df`` as a booktabs tabular: a column with ``<col>_sd`` and the table's ``n`` shows
    ``$mean \\pm h$`` (h: 95 % CI half-width; the mean alone where n = 1), and each column with
    a direction (``better_of``) has its best value in bold (ties as shown all bold) where two or
    more rows have one."""
    spread = {c: f"{c}_sd" for c in df.columns if f"{c}_sd" in df.columns and "n" in df.columns}
    columns = [c for c in df.columns if c not in spread.values()]
    rows = df.to_dicts()
    numeric = [c for c in columns if df.schema[c].is_numeric()]
    whole = {c for c in numeric if _is_count(df[c])}

    def shown(c: str, v) -> float:  # the value as the table prints it, so ties look tied
        return round(v) if c in whole else float(f"{v:.{SIGNIFICANT}g}") if digits is None else round(v, digits)

    best: dict[str, float] = {}
    for c in numeric:
        values = [shown(c, r[c]) for r in rows if r[c] is not None and math.isfinite(r[c])]
        goal = better_of(c, better)
        if goal and len(values) > 1:
            best[c] = min(values) if goal == "min" else max(values)

    def cell(row: dict, c: str) -> str:
        v = row[c]
        if v is None:
            return "--"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if c not in numeric:
            return latex_escape(str(v))
        text = _number(v, digits, c in whole)
        half = ci_half_width(row[spread[c]], row["n"]) if c in spread else None
        if half is not None:
            text += rf" \pm {_number(half, digits, False)}"
        bold = c in best and math.isfinite(v) and shown(c, v) == best[c]
        return f"$\\mathbf{{{text}}}$" if bold else f"${text}$"

    marked = ", ".join(f"{c} ({'lower' if better_of(c, better) == 'min' else 'higher'})" for c in best)
    pm = f"% ± ({', '.join(spread)}): the 95 % CI of the mean over n seeds (Student t); none where n = 1"
    lines = [
        *([pm] if spread else []),
        f"% bold: the best value of each column: {marked or 'none has a direction'}",
        rf"\begin{{tabular}}{{{''.join('r' if c in numeric else 'l' for c in columns)}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in columns) + r" \\",
        r"\midrule",
        *(" & ".join(cell(r, c) for c in columns) + r" \\" for r in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def write_table(
    rows: list[dict],
    stem: Path,
    sort_by: str,
    first: tuple[str, ...] = (),
    descending: bool = False,
    digits: int | None = 4,
    better: dict[str, str | None] | None = None,
) -> pl.DataFrame:
    """Write ``stem``.csv, ``stem``.md and ``stem``.tex (for a paper: see ``latex_table``;
    ``better`` maps a column to ``min``/``max``/None over its name's default) sorted by
    ``sort_by``, ``first`` columns leading (those the rows have).

    The markdown and LaTeX round floats to ``digits`` decimals (None: unrounded in the markdown,
    ``SIGNIFICANT`` significant digits in the LaTeX); the CSV never rounds.
    """
    df = pl.DataFrame(rows, infer_schema_length=None)
    df = df.sort(sort_by, descending=descending, nulls_last=True, maintain_order=True)
    first = tuple(c for c in first if c in df.columns)  # a leading column some studies lack
    df = df.select([*first, *(c for c in df.columns if c not in first)])
    df.write_csv(stem.with_suffix(".csv"))
    shown = df if digits is None else df.with_columns(pl.col(pl.Float64).round(digits))
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=10_000,
        fmt_str_lengths=200,
    ):
        stem.with_suffix(".md").write_text(str(shown) + "\n")
    stem.with_suffix(".tex").write_text(latex_table(df, digits, better))
    return df


def facet_plot(rows: list[dict], keys: list[str], x: str, hue: str, metric: str, path: Path, title: str) -> None:
    """``metric`` vs ``x``, a line per ``hue`` value, a panel per combination of the other ``keys``.

    Each row is a cell (or a replicate group): its varying params, metrics, ``named``, and
    optionally ``<metric>_sd`` drawn as error bars. Named cells (off the grid) are drawn as
    horizontal references in every panel.
    """
    grid = [r for r in rows if not r["named"]]
    named = [r for r in rows if r["named"]]
    axes_keys = [k for k in keys if k not in (x, hue) and len({r[k] for r in grid}) > 1]
    others = sorted({tuple((k, r[k]) for k in axes_keys) for r in grid})
    n = max(1, len(others))
    cols = min(n, 2)
    fig, axs = plt.subplots(
        (n + cols - 1) // cols, cols, figsize=(5 * cols, 3.6 * ((n + cols - 1) // cols)), squeeze=False, sharey=True
    )
    for ax, combo in zip(axs.flat, others or [()], strict=False):
        sub = [r for r in grid if all(r[k] == v for k, v in combo)]
        for h, group in itertools.groupby(sorted(sub, key=lambda r: (r[hue], r[x])), key=lambda r: r[hue]):
            group = list(group)
            err = [r.get(f"{metric}_sd") or 0.0 for r in group]
            ax.errorbar(
                [r[x] for r in group], [r[metric] for r in group], yerr=err, marker="o", capsize=3, label=f"{hue}={h}"
            )
        for r, style, color in zip(
            named, itertools.cycle(("--", ":", "-.")), itertools.cycle(("black", "tab:red", "tab:purple"))
        ):
            ax.axhline(r[metric], linestyle=style, color=color, lw=1, label=f"{r['cell']} ({r[metric]:.4g})")
        ax.set_title(", ".join(f"{k}={v}" for k, v in combo) or title, fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    for ax in list(axs.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {metric} vs {x}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def one_factor_rows(rows: list[dict], base: dict, keys: list[str], metric: str) -> list[dict]:
    """Each ablation against the base cell: rows that differ from ``base`` in one factor only.

    A row's factor is the set of ``keys`` where it differs from the base params (an axis such
    as window+stride moves two keys together; a named cell moves the keys it overrides). Rows
    whose factor contains another row's factor (a corner of two axes) are interactions, left
    to ``facet_plot``. Returns one row per (factor, setting), the base setting first in each
    factor, with n, the metric, its s.d. and the change from the base: with its 95 % CI and
    ``finding`` where the rows carry ``compare_with_reference`` columns against the base,
    else the plain difference of means.
    """
    factor_of = [frozenset(k for k in keys if r[k] != base[k]) for r in rows]
    base_rows = [r for r, f in zip(rows, factor_of, strict=True) if not f]
    factors = {f for f in factor_of if f}
    out = []
    for factor in sorted((f for f in factors if not any(o < f for o in factors)), key=sorted):
        members = [r for r, f in zip(rows, factor_of, strict=True) if f == factor]
        ordered = base_rows + sorted(
            members, key=lambda r: [(r[k] is None, 0 if r[k] is None else r[k]) for k in sorted(factor)]
        )
        for i, r in enumerate(ordered):
            change = r.get(f"{metric}_diff", r[metric] - base_rows[0][metric] if base_rows else None)
            out.append(
                {
                    "factor": " × ".join(sorted(factor)),
                    "setting": ", ".join(f"{k}={r[k]}" for k in sorted(factor)),
                    "is_base": i < len(base_rows),
                    "cell": r["cell"],
                    "n": r.get("n", 1),
                    metric: r[metric],
                    f"{metric}_sd": r.get(f"{metric}_sd"),
                    f"{metric}_change": change,
                    f"{metric}_change_lo": r.get(f"{metric}_diff_lo"),
                    f"{metric}_change_hi": r.get(f"{metric}_diff_hi"),
                    "finding": r.get("finding"),
                    **{k: r[k] for k in ("n_params", "still_improving") if k in r},
                }
            )
    return out


def ci_err(centers: list[float], lo: list, hi: list) -> list[list[float]]:
    """Asymmetric error bars [below, above] from CI bounds; none (0) where a bound is missing."""
    below = [0.0 if a is None else c - a for c, a in zip(centers, lo, strict=True)]
    above = [0.0 if b is None else b - c for c, b in zip(centers, hi, strict=True)]
    return [below, above]


def one_factor_bars(rows: list[dict], metric: str, path: Path, title: str) -> None:
    """A panel per factor (from ``one_factor_rows``): each setting's change from the base
    cell with its 95 % CI as error bars (none where n < 2), so a 0.4 % effect is visible."""
    factors = list(dict.fromkeys(r["factor"] for r in rows))
    if not factors:
        return
    cols = min(len(factors), 3)
    n_rows = (len(factors) + cols - 1) // cols
    fig, axs = plt.subplots(n_rows, cols, figsize=(4 * cols, 3.4 * n_rows), squeeze=False)
    for ax, factor in zip(axs.flat, factors, strict=False):
        sub = [r for r in rows if r["factor"] == factor]
        change = [r[f"{metric}_change"] or 0.0 for r in sub]
        err = ci_err(change, [r[f"{metric}_change_lo"] for r in sub], [r[f"{metric}_change_hi"] for r in sub])
        colors = ["tab:gray" if r["is_base"] else "tab:blue" for r in sub]
        ax.bar(range(len(sub)), change, yerr=err, color=colors, capsize=3)
        ax.axhline(0, color="black", lw=0.8)
        for i, (c, r) in enumerate(zip(change, sub, strict=True)):
            mark = " *" if r.get("finding") == "yes" else ""
            ax.annotate(f"{c:+.3g}{mark}\n(n={r['n']})", (i, c), ha="center", va="bottom", fontsize=7)
        labels = [r["setting"].replace(", ", "\n") for r in sub]
        ax.set_xticks(range(len(sub)), labels, fontsize=7)
        ax.set_title(factor, fontsize=9)
        ax.set_ylabel(f"{metric} − base")
    for ax in list(axs.flat)[len(factors) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: change from the base cell (grey)\n95 % CI; * = finding (n ≥ 3, CI excludes 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_plot(rows: list[dict], path: Path, title: str) -> None:
    """Every cell's training loss against step."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        ax.plot([h["step"] for h in r["curve"]], [h["loss"] for h in r["curve"]], lw=0.8, label=r["cell"])
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title(f"{title}: training curves")
    if len(rows) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replicate_groups(rows: list[dict], keys: list[str], replicate: str) -> dict[str, list[dict]]:
    """Cells differing only in ``replicate``, by group label.

    Named cells group by their params too (``sdpa`` and ``sdpa_seed1`` form one group, named
    after the shortest name); grid groups are named by their slug without the replicate part.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["named"], *(r[k] for k in keys if k != replicate)), []).append(r)
    out = {}
    for members in groups.values():
        if members[0]["named"]:
            label = min((m["cell"] for m in members), key=len)
        else:
            label = ",".join(p for p in members[0]["cell"].split(",") if not p.startswith(f"{replicate}="))
        out[label] = members
    return out


def _agree(values: list) -> str:
    """yes / no / k/n: how many replicates a flag holds for."""
    k = sum(bool(v) for v in values)
    return "yes" if k == len(values) else "no" if k == 0 else f"{k}/{len(values)}"


def replicate_summary(
    rows: list[dict], keys: list[str], replicate: str, metrics: list[str], fixed: tuple[str, ...] = ()
) -> list[dict]:
    """Mean, sample s.d. and count ``n`` of ``metrics`` over cells differing only in ``replicate``
    (groups as ``replicate_groups``); ``fixed`` metrics (parameter counts, floors, step counts:
    the same for every seed) get the mean only.

    The s.d. is missing (None) where fewer than two cells have the metric: one seed says
    nothing about spread. Flags (bools such as ``still_improving``) become yes / no / k/n;
    text columns (``note``, ``convention``) are kept where every replicate agrees.
    """
    if "n" in metrics:
        raise ValueError("a metric named 'n' would hide the replicate count n: rename it (e.g. n_eval)")
    out = []
    for label, members in replicate_groups(rows, keys, replicate).items():
        first = members[0]
        row = {"cell": label, "named": first["named"], **{k: first[k] for k in keys if k != replicate}}
        row["n"] = len(members)
        for m in metrics:  # a metric some cells lack (SKA-only diagnostics): None for them
            values = pl.Series([r[m] for r in members if r.get(m) is not None], dtype=pl.Float64)
            row[m] = values.mean() if len(values) else None
            if m not in fixed:
                row[f"{m}_sd"] = values.std() if len(values) > 1 else None
        for k, v in first.items():
            if k in row or k in keys or k == "curve":
                continue
            if isinstance(v, bool):
                row[k] = _agree([m.get(k) for m in members])
            elif isinstance(v, str) and all(m.get(k) == v for m in members):
                row[k] = v
        out.append(row)
    return out


def compare_with_reference(
    summary: list[dict], rows: list[dict], keys: list[str], replicate: str, metric: str, reference: dict
) -> list[dict]:
    """``summary`` rows with each group's difference from the reference group in ``metric``.

    The reference group is the one whose params (``keys`` but ``replicate``) equal
    ``reference``'s. Adds ``<metric>_diff`` and its 95 % CI ``<metric>_diff_lo`` / ``_hi``
    (paired by ``replicate`` where both groups have the same replicate values, Welch otherwise;
    missing with n < 2 on a side), ``ci``, ``vs`` (the reference's label) and ``finding``: yes
    only with n ≥ 3 on both sides and the CI excluding 0; ``ref`` on the reference row.
    """
    groups = replicate_groups(rows, keys, replicate)
    fixed = [k for k in keys if k != replicate]
    ref = next((g for g, ms in groups.items() if all(ms[0][k] == reference[k] for k in fixed)), None)
    if ref is None:
        wanted = {k: reference[k] for k in fixed}
        raise ValueError(f"no cell has the reference params {wanted}; cells: {sorted(groups)}")

    def by_seed(label):  # replicate value → metric; without one, ids no other group shares (Welch)
        members = groups[label]
        ids = [m[replicate] if replicate in m else (label, i) for i, m in enumerate(members)]
        return {i: m[metric] for i, m in zip(ids, members, strict=True) if m.get(metric) is not None}

    out = []
    for row in summary:
        d = difference_ci(by_seed(row["cell"]), by_seed(ref))
        if row["cell"] == ref:
            d |= {"lo": None, "hi": None, "ci": None, "finding": "ref"}
        out.append(
            row
            | {
                f"{metric}_diff": d["diff"],
                f"{metric}_diff_lo": d["lo"],
                f"{metric}_diff_hi": d["hi"],
                "ci": d["ci"],
                "vs": ref,
                "finding": d["finding"],
            }
        )
    return out


def histograms(series: dict[str, list[float]], path: Path, xlabel: str, title: str, bins: int = 40) -> None:
    """One histogram panel per named series, sharing the x range so widths compare."""
    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    fig, axs = plt.subplots(1, len(series), figsize=(3.2 * len(series), 3), sharex=True, squeeze=False)
    for ax, (name, values) in zip(axs[0], series.items(), strict=False):
        ax.hist(values, bins=bins, range=(lo, hi), color="tab:blue", alpha=0.8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def line_plot(
    rows: list[dict], x: str, y: str, series: tuple[str, ...], path: Path, title: str, logy: bool = False
) -> None:
    """``y`` against ``x``, one line per combination of the ``series`` keys."""
    fig, ax = plt.subplots(figsize=(6, 4))
    key = lambda r: tuple(str(r[s]) for s in series)  # noqa: E731
    for name, group in itertools.groupby(sorted(rows, key=lambda r: (key(r), r[x])), key=key):
        group = list(group)
        ax.plot([r[x] for r in group], [r[y] for r in group], marker="o", label=" ".join(name))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FLOOR_STYLES = (("tab:red", ":"), ("tab:orange", "--"), ("tab:purple", "-."))


def draw_floors(ax, floors: dict[str, float]) -> None:
    """Each floor (chance, a random policy…) as a labelled horizontal reference line."""
    for (name, value), (color, style) in zip(floors.items(), itertools.cycle(FLOOR_STYLES), strict=False):
        ax.axhline(value, color=color, linestyle=style, lw=1, label=f"{name} ({value:.3g})")
    if floors:
        ax.legend(fontsize=7)


def bar_plot(
    rows: list[dict], metric: str, path: Path, title: str, floors: dict[str, float] | None = None, best_first=True
) -> None:
    """One bar per row (cell or replicate group) with ``<metric>_sd`` error bars (none where
    n = 1), sorted by value, n under each bar, and the ``floors`` as labelled lines."""
    rows = sorted(rows, key=lambda r: r[metric], reverse=best_first)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(rows) + 2), 4))
    colors = ["tab:gray" if r["named"] else "tab:blue" for r in rows]
    ax.bar(
        range(len(rows)),
        [r[metric] for r in rows],
        yerr=[r.get(f"{metric}_sd") or 0.0 for r in rows],
        color=colors,
        capsize=3,
    )
    labels = [f"{r['cell']} (n={r.get('n', 1)})" for r in rows]
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    draw_floors(ax, floors or {})
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scaling_panels(rows: list[dict], path: Path, title: str, floors: dict[str, dict[str, float]]) -> None:
    """The scaling study's 2×2 from one row per (size, kind): accuracy and optimality vs
    parameters (mean ± s.d.) with their ``floors`` (metric → {name: value}) as lines, and
    PoH − baseline per size with its 95 % CI (``<metric>_diff``, ``_lo``, ``_hi``)."""
    fig, axs = plt.subplots(2, 2, figsize=(9, 7))
    for ax, metric in zip(axs[0], ("acc", "opt"), strict=False):
        for kind, marker in (("baseline", "o"), ("poh", "s")):
            pts = sorted((r["n_params"], r[metric], r.get(f"{metric}_sd") or 0.0) for r in rows if r["kind"] == kind)
            ax.errorbar(
                [p for p, _, _ in pts], [v for _, v, _ in pts], yerr=[e for *_, e in pts], marker=marker, label=kind
            )
        draw_floors(ax, floors.get(metric, {}))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # narrow ranges crowd them
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    poh = [r for r in rows if r["kind"] == "poh"]
    for ax, metric in zip(axs[1], ("acc", "opt"), strict=False):
        deltas = [r.get(f"{metric}_diff") or 0.0 for r in poh]
        err = ci_err(deltas, [r.get(f"{metric}_diff_lo") for r in poh], [r.get(f"{metric}_diff_hi") for r in poh])
        colors = ["tab:green" if d >= 0 else "tab:red" for d in deltas]
        ax.bar([f"{r['size']} (n={r['n']})" for r in poh], deltas, yerr=err, capsize=3, color=colors)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("size")
        ax.set_ylabel(f"PoH − baseline {metric} (95 % CI)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
