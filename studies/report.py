"""Tables and plots for ablation reports: polars for tables, matplotlib for figures."""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from studies.labels import axis_label, series_label, short_label  # noqa: E402
from studies.stats import difference_ci, t_quantile  # noqa: E402

# Which way a column is better, by its last word (``test_cell_acc``, ``eps_mse``, ``val_loss``); a
# derived column (``acc_sd``, ``ppl_diff``) ends in another word and has none. A caller's ``better``
# overrides it: the report's own goal, or None for a floor such as ``random_acc``.
LOWER_IS_BETTER = frozenset({"perplexity", "ppl", "mse", "fid", "loss"})
HIGHER_IS_BETTER = frozenset({"acc", "accuracy", "top1", "top5", "recall"})
SIGNIFICANT = 4  # significant digits of a table written with digits=None
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


LOAD_CAVEAT = (
    "speed and time columns ({columns}) were measured while training, with other jobs sharing the machine:"
    " compare speed with the ska_bench study, which runs each benchmark alone"
)


def timing_columns(columns: list[str]) -> list[str]:
    """Columns that measure speed or time (``*_per_s``, ``*_s``, ``ms_per_step``): load-dependent."""
    return [c for c in columns if c.endswith("_s") or c == "ms_per_step"]


def shown_columns(df: pl.DataFrame) -> list[str]:
    """The columns a reader's table (.md, .tex) shows: not one empty in every row (a param no
    variant here uses) nor the s.d. of a value constant within every group (all 0: no spread to show)."""
    out = []
    for c in df.columns:
        values = df[c].drop_nulls()
        if len(values) == 0:
            continue
        if c.endswith("_sd") and c.removesuffix("_sd") in df.columns and df.schema[c].is_numeric():
            if (values.abs() == 0).all():
                continue
        out.append(c)
    return out


def _plain(value, digits: int | None, whole: bool) -> str:
    """A value as the markdown shows it: counts as integers, floats to ``digits`` decimals, flags yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if whole and math.isfinite(value):
            return str(round(value))
        return f"{value:.4g}" if digits is None else str(round(value, digits))
    return str(value)


def markdown_table(df: pl.DataFrame, digits: int | None = 4) -> str:
    """``df`` as a pipe table for reading: ``shown_columns`` only, counts as integers, a metric with
    ``<metric>_sd`` and the table's ``n`` as ``mean ± s.d.`` (the mean alone where the s.d. is
    missing, as for n = 1: never ± 0), empty cells as –."""
    columns = shown_columns(df)
    spread = {c: f"{c}_sd" for c in columns if f"{c}_sd" in columns and "n" in columns}
    columns = [c for c in columns if c not in spread.values()]
    whole = {c for c in columns if df.schema[c].is_numeric() and _is_count(df[c])}
    header = [f"{c} (± s.d.)" if c in spread else c for c in columns]
    body = []
    for row in df.to_dicts():
        line = []
        for c in columns:
            text = _plain(row[c], digits, c in whole)
            sd = row[spread[c]] if c in spread else None
            if sd is not None and row[c] is not None:
                text += f" ± {_plain(sd, digits, False)}"
            line.append(text)
        body.append(line)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *("| " + " | ".join(t.ljust(w) for t, w in zip(r, widths, strict=True)) + " |" for r in body),
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
    timing_note: str | None = LOAD_CAVEAT,
) -> pl.DataFrame:
    """Write ``stem``.csv, ``stem``.md and ``stem``.tex (for a paper: see ``latex_table``;
    ``better`` maps a column to ``min``/``max``/None over its name's default) sorted by
    ``sort_by``, ``first`` columns leading (those the rows have).

    The CSV has every column, unrounded, under its exact name. The markdown (``markdown_table``)
    and LaTeX are for reading: floats to ``digits`` decimals (None: 4 significant digits), counts
    as integers, no empty or constant-spread columns, and under a table with speed or time columns
    ``timing_note`` (default: the load caveat; a benchmark passes how it measured).
    """
    df = pl.DataFrame(rows, infer_schema_length=None)
    df = df.sort(sort_by, descending=descending, nulls_last=True, maintain_order=True)
    first = tuple(c for c in first if c in df.columns)  # a leading column some studies lack
    df = df.select([*first, *(c for c in df.columns if c not in first)])
    df.write_csv(stem.with_suffix(".csv"))
    timed = timing_columns(shown_columns(df))
    note = timing_note.format(columns=", ".join(timed)) if timed and timing_note else None
    stem.with_suffix(".md").write_text(markdown_table(df, digits) + (f"\nNote: {note}\n" if note else ""))
    tex = latex_table(df.select(shown_columns(df)), digits, better)
    stem.with_suffix(".tex").write_text((f"% note: {note}\n" if note else "") + tex)
    return df


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


def replicate_groups(rows: list[dict], keys: list[str], replicate: str) -> dict[str, list[dict]]:
    """Cells differing only in ``replicate``, by group label, named cells first in each group.

    Grid and named cells group by their params alike: a named cell that repeats a grid cell's
    params (``ska``, ``ska_seed1`` and the grid's base corner) joins its group, so the base is
    one group, not two. Cells equal in ``replicate`` too are one run planned twice (the same
    fingerprint): counted once, the named cell's row kept, its ``named`` false when the other
    is a grid cell (the group stays a point of the grid). A group with a named cell is named
    after its shortest (``sdpa`` for ``sdpa`` and ``sdpa_seed1``); a grid group by its slug
    without the replicate part.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys if k != replicate), []).append(r)
    out = {}
    for members in groups.values():
        named = [m["cell"] for m in members if m["named"]]
        if named:
            label = min(named, key=len)
        else:
            label = ",".join(p for p in members[0]["cell"].split(",") if not p.startswith(f"{replicate}="))
        runs: dict[tuple, dict] = {}
        for m in sorted(members, key=lambda m: not m["named"]):
            run = tuple(m.get(k) for k in keys)  # a row may lack the replicate (compare_with_reference)
            if run in runs:
                runs[run] = runs[run] | {"named": runs[run]["named"] and m["named"]}
            else:
                runs[run] = m
        out[label] = list(runs.values())
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
        # a group holding a grid cell is a point of the grid (facet_plot draws it there), named or not
        named = all(m["named"] for m in members)
        row = {"cell": label, "named": named, **{k: first[k] for k in keys if k != replicate}}
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


# ---- figures: labelled axes with units (studies.labels), titles that fit, no error bar for n = 1


def wrapped(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (each line kept)."""
    chars = max(20, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def put_title(target, text: str, fontsize: float = 9) -> None:
    """Set an axes' title (or ``fig``'s suptitle when ``target`` is a figure), wrapped to its width."""
    if isinstance(target, matplotlib.figure.Figure):
        target.suptitle(wrapped(text, target.get_figwidth(), fontsize), fontsize=fontsize)
        return
    width = target.figure.get_figwidth() * target.get_position().width
    target.set_title(wrapped(text, width, fontsize), fontsize=fontsize)


def save(fig, path: Path) -> None:
    """Write ``fig`` (constrained layout) and close it; the bounding box takes in every text."""
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def error_bars(ax, positions, centers, lo: list, hi: list, horizontal: bool = False) -> None:
    """95 % CI (or ± s.d.) whiskers from bounds, drawn only where both bounds exist: a single run
    (n = 1) gets no error bar at all, never a zero-width one."""
    have = [i for i, (a, b) in enumerate(zip(lo, hi, strict=True)) if a is not None and b is not None]
    if not have:
        return
    c = [centers[i] for i in have]
    err = [[c[j] - lo[i] for j, i in enumerate(have)], [hi[i] - c[j] for j, i in enumerate(have)]]
    pos = [positions[i] for i in have]
    x, y = (c, pos) if horizontal else (pos, c)
    kind = {"xerr": err} if horizontal else {"yerr": err}
    ax.errorbar(x, y, **kind, fmt="none", ecolor="black", capsize=3, lw=1)


def sd_bounds(rows: list[dict], metric: str) -> tuple[list, list]:
    """mean ∓ s.d. per row; None where the s.d. is missing (n = 1)."""
    sds = [r.get(f"{metric}_sd") if r.get("n", 1) > 1 else None for r in rows]
    lo = [None if s is None else r[metric] - s for r, s in zip(rows, sds, strict=True)]
    hi = [None if s is None else r[metric] + s for r, s in zip(rows, sds, strict=True)]
    return lo, hi


FLOOR_STYLES = (("tab:red", ":"), ("tab:orange", "--"), ("tab:purple", "-."))


def draw_floors(ax, floors: dict[str, float], vertical: bool = False) -> None:
    """Each floor (chance, a random policy…) as a labelled reference line."""
    for (name, value), (color, style) in zip(floors.items(), itertools.cycle(FLOOR_STYLES), strict=False):
        line = ax.axvline if vertical else ax.axhline
        line(value, color=color, linestyle=style, lw=1, label=f"floor: {name.replace('_', ' ')} ({value:.3g})")


def bar_figure(
    rows: list[dict], metric: str, title_text: str, floors: dict[str, float] | None = None, best_first=True
) -> matplotlib.figure.Figure:
    """One horizontal bar per row (cell or replicate group), best on top, with ± s.d. whiskers
    where n ≥ 2 (none for n = 1), n beside each name, and the ``floors`` as labelled lines."""
    rows = sorted(rows, key=lambda r: r[metric], reverse=not best_first)  # barh draws bottom-up
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.32 * len(rows)), layout="constrained")
    values = [r[metric] for r in rows]
    ax.barh(range(len(rows)), values, color=["tab:gray" if r["named"] else "tab:blue" for r in rows])
    error_bars(ax, range(len(rows)), values, *sd_bounds(rows, metric), horizontal=True)
    ax.set_yticks(range(len(rows)), [f"{r['cell']} (n={r.get('n', 1)})" for r in rows], fontsize=7)
    draw_floors(ax, floors or {}, vertical=True)
    ax.set_xlabel(axis_label(metric))
    ax.legend(
        handles=[
            matplotlib.patches.Patch(color="tab:gray", label="named cell"),
            matplotlib.patches.Patch(color="tab:blue", label="grid cell"),
            *(line for line in ax.get_lines() if not line.get_label().startswith("_")),
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    put_title(fig, f"{title_text}\nbars: mean over seeds; whiskers: ± s.d. (none where n = 1)", fontsize=9)
    return fig


def bar_plot(
    rows: list[dict], metric: str, path: Path, title: str, floors: dict[str, float] | None = None, best_first=True
) -> None:
    """``bar_figure`` saved to ``path``."""
    save(bar_figure(rows, metric, title, floors, best_first), path)


def one_factor_figure(rows: list[dict], metric: str, title_text: str) -> matplotlib.figure.Figure:
    """A panel per factor (from ``one_factor_rows``): each setting's change from the base cell
    (not bars from 0) with its 95 % CI where there is one, the axis spanning just the changes and
    their CIs, so a 0.4 % effect is visible."""
    factors = list(dict.fromkeys(r["factor"] for r in rows))
    cols = min(len(factors), 3)
    n_rows = (len(factors) + cols - 1) // cols
    fig, axs = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.6 * n_rows), squeeze=False, layout="constrained")
    for ax, factor in zip(axs.flat, factors, strict=False):
        sub = [r for r in rows if r["factor"] == factor]
        change = [r[f"{metric}_change"] or 0.0 for r in sub]
        lo, hi = [r[f"{metric}_change_lo"] for r in sub], [r[f"{metric}_change_hi"] for r in sub]
        ax.bar(range(len(sub)), change, color=["tab:gray" if r["is_base"] else "tab:blue" for r in sub])
        error_bars(ax, range(len(sub)), change, lo, hi)
        ax.axhline(0, color="black", lw=0.8)
        reach = [0.0, *(v for v in (*change, *lo, *hi) if v is not None)]
        low, high = min(reach), max(reach)
        pad = 0.25 * (high - low) if high > low else 1.0
        ax.set_ylim(low - pad, high + pad)
        for i, (c, r) in enumerate(zip(change, sub, strict=True)):
            mark = " *" if r.get("finding") == "yes" else ""
            ax.annotate(
                f"{c:+.3g}{mark}\nn={r['n']}", (i, c), ha="center", va="bottom" if c >= 0 else "top", fontsize=7
            )
        ax.set_xticks(range(len(sub)), [r["setting"].replace(", ", "\n") for r in sub], fontsize=7)
        put_title(ax, " × ".join(axis_label(f) for f in factor.split(" × ")))
        ax.set_ylabel(f"Δ {short_label(metric)} vs base", fontsize=8)
    for ax in list(axs.flat)[len(factors) :]:
        ax.set_visible(False)
    put_title(
        fig,
        f"{title_text}: change from the base cell (grey)\nwhiskers: 95 % CI (none where n < 2); "
        "* = finding (n ≥ 3, CI excludes 0)",
    )
    return fig


def one_factor_bars(rows: list[dict], metric: str, path: Path, title: str) -> None:
    """``one_factor_figure`` saved to ``path`` (nothing when there is no factor)."""
    if rows:
        save(one_factor_figure(rows, metric, title), path)


def outside_legend(fig, ax, limit: int = 40) -> None:
    """One legend for the figure, right of the panels, so no curve hides behind it."""
    handles, labels = ax.get_legend_handles_labels()
    if handles and len(handles) <= limit:
        fig.legend(handles, labels, fontsize=7, loc="outside right upper")


def facet_plot(rows: list[dict], keys: list[str], x: str, hue: str, metric: str, path: Path, title: str) -> None:
    """``metric`` vs ``x``, a line per ``hue`` value, a panel per combination of the other ``keys``.

    Each row is a cell (or a replicate group): its varying params, metrics, ``named``, and
    optionally ``<metric>_sd`` drawn as error bars (none where n = 1). Named cells (off the grid)
    are drawn as horizontal references in every panel; one legend, outside the panels.
    """
    grid = [r for r in rows if not r["named"]]
    named = [r for r in rows if r["named"]]
    axes_keys = [k for k in keys if k not in (x, hue) and len({r[k] for r in grid}) > 1]
    others = sorted({tuple((k, r[k]) for k in axes_keys) for r in grid})
    n = max(1, len(others))
    cols = min(n, 2)
    fig, axs = plt.subplots(
        (n + cols - 1) // cols,
        cols,
        figsize=(4.5 * cols + 3, 3.4 * ((n + cols - 1) // cols)),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for ax, combo in zip(axs.flat, others or [()], strict=False):
        sub = [r for r in grid if all(r[k] == v for k, v in combo)]
        for h, group in itertools.groupby(sorted(sub, key=lambda r: (r[hue], r[x])), key=lambda r: r[hue]):
            group = list(group)
            xs, ys = [r[x] for r in group], [r[metric] for r in group]
            ax.plot(xs, ys, marker="o", label=f"{axis_label(hue)} = {h}")
            error_bars(ax, xs, ys, *sd_bounds(group, metric))
        for r, style, color in zip(
            named, itertools.cycle(("--", ":", "-.")), itertools.cycle(("black", "tab:red", "tab:purple"))
        ):
            ax.axhline(r[metric], linestyle=style, color=color, lw=1, label=f"{r['cell']} ({r[metric]:.4g})")
        put_title(ax, ", ".join(f"{axis_label(k)} = {v}" for k, v in combo) or title)
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(metric))
    for ax in list(axs.flat)[n:]:
        ax.set_visible(False)
    outside_legend(fig, axs.flat[0])
    put_title(fig, f"{title}: {short_label(metric)} vs {short_label(x)}", fontsize=10)
    save(fig, path)


def curves_plot(rows: list[dict], path: Path, title: str) -> None:
    """Every cell's training loss against step; a legend (outside) up to 40 cells."""
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for r in rows:
        ax.plot([h["step"] for h in r["curve"]], [h["loss"] for h in r["curve"]], lw=0.8, label=r["cell"])
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel(axis_label("train_loss"))
    outside_legend(fig, ax)
    put_title(ax, f"{title}: training curves")
    save(fig, path)


def histograms(series: dict[str, list[float]], path: Path, xlabel: str, title: str, bins: int = 40) -> None:
    """One histogram panel per named series, sharing the x range so widths compare."""
    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    fig, axs = plt.subplots(
        1, len(series), figsize=(3.2 * len(series), 3), sharex=True, squeeze=False, layout="constrained"
    )
    for ax, (name, values) in zip(axs[0], series.items(), strict=False):
        ax.hist(values, bins=bins, range=(lo, hi), color="tab:blue", alpha=0.8)
        ax.axvline(0, color="black", lw=0.8)
        put_title(ax, name)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("set pairs (count)", fontsize=8)
    put_title(fig, title, fontsize=10)
    save(fig, path)


def line_plot(
    rows: list[dict], x: str, y: str, series: tuple[str, ...], path: Path, title: str, logy: bool = False
) -> None:
    """``y`` against ``x``, one line per combination of the ``series`` keys, named by
    ``studies.labels.series_label`` (``SKA python fp32, block``)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    key = lambda r: tuple(str(r[s]) for s in series)  # noqa: E731
    for name, group in itertools.groupby(sorted(rows, key=lambda r: (key(r), r[x])), key=key):
        group = list(group)
        label = series_label(dict(zip(series, name, strict=True)))
        ax.plot([r[x] for r in group], [r[y] for r in group], marker="o", label=label)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if logy:
        ax.set_yscale("log")
    outside_legend(fig, ax)
    put_title(ax, title, fontsize=10)
    save(fig, path)


def scaling_panels(rows: list[dict], path: Path, title: str, floors: dict[str, dict[str, float]]) -> None:
    """The scaling study's 2×2 from one row per (size, kind): accuracy and optimality vs
    parameters (mean ± s.d., none where n = 1) with their ``floors`` (metric → {name: value}) as
    lines, and PoH − baseline per size with its 95 % CI (``<metric>_diff``, ``_lo``, ``_hi``)."""
    fig, axs = plt.subplots(2, 2, figsize=(10, 7.5), layout="constrained")
    for ax, metric in zip(axs[0], ("acc", "opt"), strict=False):
        for kind, marker in (("baseline", "o"), ("poh", "s")):
            part = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["n_params"])
            xs, ys = [r["n_params"] for r in part], [r[metric] for r in part]
            ax.plot(xs, ys, marker=marker, label={"poh": "PoH-HRM", "baseline": "transformer baseline"}[kind])
            error_bars(ax, xs, ys, *sd_bounds(part, metric))
        draw_floors(ax, floors.get(metric, {}))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # narrow ranges crowd them
        ax.set_xlabel(axis_label("n_params"))
        ax.set_ylabel(axis_label(metric))
        ax.legend(fontsize=7)
    poh = [r for r in rows if r["kind"] == "poh"]
    for ax, metric in zip(axs[1], ("acc", "opt"), strict=False):
        deltas = [r.get(f"{metric}_diff") or 0.0 for r in poh]
        ax.bar(range(len(poh)), deltas, color=["tab:green" if d >= 0 else "tab:red" for d in deltas])
        error_bars(
            ax,
            range(len(poh)),
            deltas,
            [r.get(f"{metric}_diff_lo") for r in poh],
            [r.get(f"{metric}_diff_hi") for r in poh],
        )
        ax.set_xticks(range(len(poh)), [f"{r['size']} (n={r['n']})" for r in poh])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel(axis_label("size"))
        ax.set_ylabel(f"PoH − baseline, Δ {short_label(metric)}\n(whiskers: 95 % CI)", fontsize=8)
    put_title(fig, title, fontsize=11)
    save(fig, path)
