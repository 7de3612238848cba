"""Report helpers on fixed rows: replicate averaging, differences from a reference with their
95 % CI, the one-factor-at-a-time view, the still-improving flag, the t quantiles, and the
paper (LaTeX) form of every table."""

import math
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from stages.common.report_rows import reference_params, still_improving
from studies.report import (
    compare_with_reference,
    one_factor_bars,
    one_factor_rows,
    replicate_summary,
    write_table,
)
from studies.stats import difference_ci, t_cdf, t_quantile

BASE = {"k": 64, "window": 32, "stride": 16, "beta": None, "attention": "ska"}


def _row(cell, named=False, ppl=100.0, **kw):
    return {"cell": cell, "named": named, **BASE, **kw, "ppl": ppl}


def test_replicate_summary_averages_cells_differing_only_in_the_seed():
    rows = [
        _row("k=64,seed=0", seed=0, ppl=10.0),
        _row("k=64,seed=1", seed=1, ppl=14.0),
        _row("sdpa", named=True, attention="sdpa", seed=0, ppl=20.0),
        _row("sdpa_seed1", named=True, attention="sdpa", seed=1, ppl=30.0),
    ]
    keys = [*BASE, "seed"]
    summary = {r["cell"]: r for r in replicate_summary(rows, keys, "seed", ["ppl"])}
    assert set(summary) == {"k=64", "sdpa"}
    assert summary["k=64"]["ppl"] == 12.0
    assert summary["k=64"]["ppl_sd"] == pytest.approx(math.sqrt(8.0))  # sample s.d. of 10, 14
    assert summary["sdpa"]["n"] == 2 and summary["sdpa"]["ppl"] == 25.0
    assert "seed" not in summary["sdpa"]


def test_one_factor_rows_compare_each_ablation_with_the_base_and_skip_interactions():
    rows = [
        _row("base", ppl=100.0),
        _row("k=32", k=32, ppl=110.0),
        _row("k=128", k=128, ppl=95.0),
        _row("w64", window=64, stride=32, ppl=90.0),  # an axis that moves two keys together
        _row("k=32,w64", k=32, window=64, stride=32, ppl=80.0),  # interaction: not a factor
        _row("beta_off", named=True, beta=0.0, ppl=104.0),
        _row("sdpa", named=True, attention="sdpa", ppl=150.0),
    ]
    out = one_factor_rows(rows, BASE, list(BASE), "ppl")
    by_factor: dict[str, list[tuple]] = {}
    for r in out:
        by_factor.setdefault(r["factor"], []).append((r["setting"], r["is_base"], r["ppl_change"]))
    assert by_factor == {
        "attention": [("attention=ska", True, 0.0), ("attention=sdpa", False, 50.0)],
        "beta": [("beta=None", True, 0.0), ("beta=0.0", False, 4.0)],
        "k": [("k=64", True, 0.0), ("k=32", False, 10.0), ("k=128", False, -5.0)],
        "stride × window": [("stride=16, window=32", True, 0.0), ("stride=32, window=64", False, -10.0)],
    }
    assert "k=32,w64" not in {r["cell"] for r in out}


def test_one_factor_rows_without_a_base_cell_still_group_but_give_no_change():
    rows = [_row("k=32", k=32, ppl=110.0), _row("k=128", k=128, ppl=95.0)]
    out = one_factor_rows(rows, BASE, list(BASE), "ppl")
    assert [(r["setting"], r["ppl_change"]) for r in out] == [("k=32", None), ("k=128", None)]


def test_one_factor_bars_draw_a_png(tmp_path):
    rows = one_factor_rows([_row("base"), _row("k=32", k=32, ppl=120.0)], BASE, list(BASE), "ppl")
    one_factor_bars(rows, "ppl", tmp_path / "bars.png", "toy")
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replicate_summary_leaves_a_metric_empty_where_no_cell_has_it():
    rows = [
        _row("a", seed=0, ppl=10.0, gate=0.1),
        _row("a1", seed=1, ppl=12.0),
        _row("s", named=True, attention="sdpa"),
    ]
    summary = {r["cell"]: r for r in replicate_summary(rows, [*BASE, "seed"], "seed", ["ppl", "gate"])}
    assert summary["a"]["gate"] == 0.1 and summary["a"]["gate_sd"] is None  # one of two cells has it
    assert summary["s"]["gate"] is None and summary["s"]["gate_sd"] is None


def test_one_seed_has_no_standard_deviation_but_says_n_1():
    """n = 1 gives a missing s.d. (not ± 0): one run says nothing about spread."""
    (row,) = replicate_summary([_row("a", seed=0, ppl=10.0)], [*BASE, "seed"], "seed", ["ppl"])
    assert row["n"] == 1 and row["ppl"] == 10.0 and row["ppl_sd"] is None
    with pytest.raises(ValueError, match="replicate count"):
        replicate_summary([_row("a", seed=0, n=32)], [*BASE, "seed"], "seed", ["n"])


def test_fixed_metrics_are_averaged_without_a_spread():
    rows = [_row("a0", seed=0, ppl=10.0, n_params=5), _row("a1", seed=1, ppl=12.0, n_params=5)]
    (row,) = replicate_summary(rows, [*BASE, "seed"], "seed", ["ppl", "n_params"], fixed=("n_params",))
    assert row["n_params"] == 5 and "n_params_sd" not in row and row["ppl_sd"] == pytest.approx(math.sqrt(2))


def test_flags_and_agreeing_text_columns_survive_the_summary():
    rows = [
        _row("a0", seed=0, still_improving=True, note="x", tag="p"),
        _row("a1", seed=1, still_improving=False, note="x", tag="q"),
    ]
    (row,) = replicate_summary(rows, [*BASE, "seed"], "seed", ["ppl"])
    assert row["still_improving"] == "1/2" and row["note"] == "x" and "tag" not in row


@pytest.mark.parametrize(("df", "want"), [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_tables(df, want):
    assert t_quantile(0.975, df) == pytest.approx(want, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-want, abs=1e-3)


def test_t_quantile_tends_to_the_normal_and_inverts_the_cdf():
    assert t_quantile(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)
    assert t_cdf(t_quantile(0.9, 3.7), 3.7) == pytest.approx(0.9, abs=1e-10)  # a fractional Welch df
    assert t_cdf(0.0, 5) == pytest.approx(0.5)


def test_paired_interval_by_hand_when_both_sides_share_the_seeds():
    """Per-seed differences 1, 1.5, 2: mean 1.5, s.d. 0.5, half-width t(0.975, 2)·0.5/√3."""
    d = difference_ci({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.5, 2: 1.0})
    half = 4.302653 * 0.5 / math.sqrt(3)
    assert d["ci"] == "paired" and d["diff"] == pytest.approx(1.5)
    assert (d["lo"], d["hi"]) == (pytest.approx(1.5 - half), pytest.approx(1.5 + half))
    assert d["finding"] == "yes"  # n = 3 each side and the CI excludes 0


def test_welch_interval_by_hand_when_the_seeds_differ():
    """Variances 1 and 0.25 over 3 each: se² = 1/3 + 1/12, Welch df = 2.941."""
    d = difference_ci({0: 1.0, 1: 2.0, 2: 3.0}, {3: 0.0, 4: 0.5, 5: 1.0})
    se = math.sqrt(1 / 3 + 1 / 12)
    df = (5 / 12) ** 2 / ((1 / 3) ** 2 / 2 + (1 / 12) ** 2 / 2)
    assert df == pytest.approx(2.941, abs=1e-3)
    assert d["ci"] == "welch" and d["hi"] - d["diff"] == pytest.approx(t_quantile(0.975, df) * se)
    assert d["lo"] < 0 < d["hi"] and d["finding"] == "no"  # the same means, unpaired: not a finding


def test_no_interval_below_two_per_side_and_no_finding_below_three():
    one = difference_ci({0: 5.0}, {0: 1.0, 1: 2.0})
    assert one["diff"] == pytest.approx(3.5) and one["lo"] is None and one["ci"] is None and one["finding"] == "no"
    two = difference_ci({0: 10.0, 1: 11.0}, {0: 1.0, 1: 2.0})  # a clear gap, but n = 2
    assert two["lo"] > 0 and two["finding"] == "no"


def test_compare_with_reference_names_the_reference_and_pairs_by_seed():
    rows = [
        *(_row(f"k=64,seed={s}", seed=s, ppl=p) for s, p in enumerate((100.0, 102.0, 101.0))),
        *(_row(f"sdpa{s}", named=True, attention="sdpa", seed=s, ppl=p) for s, p in enumerate((90.0, 91.0, 90.5))),
        _row("k=32,seed=0", k=32, seed=0, ppl=120.0),
    ]
    keys = [*BASE, "seed"]
    summary = replicate_summary(rows, keys, "seed", ["ppl"])
    out = {
        r["cell"]: r for r in compare_with_reference(summary, rows, keys, "seed", "ppl", {**BASE, "attention": "sdpa"})
    }
    assert out["sdpa0"]["finding"] == "ref" and out["sdpa0"]["ppl_diff"] == 0.0 and out["sdpa0"]["ppl_diff_lo"] is None
    base = out["k=64"]  # per-seed differences 10, 11, 10.5
    assert base["vs"] == "sdpa0" and base["ci"] == "paired" and base["ppl_diff"] == pytest.approx(10.5)
    assert base["ppl_diff_lo"] == pytest.approx(10.5 - 4.302653 * 0.5 / math.sqrt(3)) and base["finding"] == "yes"
    assert out["k=32"]["ppl_diff"] == pytest.approx(120 - 90.5) and out["k=32"]["ppl_diff_lo"] is None
    with pytest.raises(ValueError, match="no cell has the reference params"):
        compare_with_reference(summary, rows, keys, "seed", "ppl", {**BASE, "attention": "flash"})


def test_a_named_cell_with_the_grid_base_params_is_one_group_and_the_reference():
    rows = [
        _row("k=64,seed=0", seed=0, ppl=100.0),  # the grid's base corner, seed 0 ...
        _row("ska", named=True, seed=0, ppl=100.0),  # ... planned again as the named cell: one run
        _row("ska_seed1", named=True, seed=1, ppl=102.0),
        _row("ska_seed2", named=True, seed=2, ppl=104.0),
        _row("k=32,seed=0", k=32, seed=0, ppl=110.0),
        *(_row(f"sdpa{s}", named=True, attention="sdpa", seed=s, ppl=p) for s, p in enumerate((90.0, 91.0, 92.0))),
    ]
    keys = [*BASE, "seed"]
    summary = replicate_summary(rows, keys, "seed", ["ppl"])
    by_cell = {r["cell"]: r for r in summary}
    assert set(by_cell) == {"ska", "k=32", "sdpa0"}  # the base once, under the named cell's name
    ska = by_cell["ska"]
    assert ska["n"] == 3 and ska["ppl"] == 102.0 and ska["ppl_sd"] == 2.0  # seed 0 counted once
    assert ska["named"] is False  # a grid point still: facet_plot draws it on its line
    for reference in (BASE, {**BASE, "seed": 0}):  # report_reference: base, or the named ska cell
        out = {r["cell"]: r for r in compare_with_reference(summary, rows, keys, "seed", "ppl", reference)}
        assert out["ska"]["finding"] == "ref" and out["k=32"]["vs"] == "ska"
        assert out["k=32"]["ppl_diff"] == 8.0 and out["k=32"]["ppl_diff_lo"] is None  # n = 1: no CI
        sdpa = out["sdpa0"]  # per-seed differences -10, -11, -12 against the merged group
        assert sdpa["ci"] == "paired" and sdpa["ppl_diff"] == pytest.approx(-11.0)
        assert sdpa["ppl_diff_hi"] == pytest.approx(-11.0 + 4.302653 / math.sqrt(3)) and sdpa["finding"] == "yes"
    ablations = one_factor_rows(out.values(), BASE, list(BASE), "ppl")
    assert [(r["factor"], r["cell"], r["n"], r["ppl_change"]) for r in ablations] == [
        ("attention", "ska", 3, 0.0),
        ("attention", "sdpa0", 3, pytest.approx(-11.0)),
        ("k", "ska", 3, 0.0),
        ("k", "k=32", 1, 8.0),
    ]


def test_a_grid_seed_the_named_cells_lack_joins_their_group():
    rows = [
        _row("k=64,seed=0", seed=0, ppl=100.0),
        _row("ska_seed1", named=True, seed=1, ppl=102.0),
        _row("ska_seed2", named=True, seed=2, ppl=104.0),
    ]
    (row,) = replicate_summary(rows, [*BASE, "seed"], "seed", ["ppl"])
    assert (row["cell"], row["n"], row["ppl"], row["named"]) == ("ska_seed1", 3, 102.0, False)


def test_one_factor_rows_carry_the_change_ci_and_n():
    rows = [
        *(_row(f"base,seed={s}", seed=s, ppl=p) for s, p in enumerate((100.0, 101.0, 102.0))),
        *(_row(f"k=32,seed={s}", k=32, seed=s, ppl=p) for s, p in enumerate((100.4, 101.4, 102.4))),
    ]
    keys = [*BASE, "seed"]
    summary = compare_with_reference(replicate_summary(rows, keys, "seed", ["ppl"]), rows, keys, "seed", "ppl", BASE)
    base, k32 = one_factor_rows(summary, BASE, list(BASE), "ppl")
    assert base["is_base"] and base["n"] == 3 and base["ppl_change"] == 0.0 and base["finding"] == "ref"
    # the same 0.4 shift on every seed: a paired CI of zero width, a finding though tiny
    assert k32["ppl_change"] == pytest.approx(0.4) and k32["ppl_change_lo"] == pytest.approx(0.4)
    assert k32["n"] == 3 and k32["finding"] == "yes"


def test_still_improving_when_the_best_state_is_the_last_step():
    assert still_improving({"best_step": 1499, "steps": 1500}) is True
    assert still_improving({"best_step": 999, "steps": 1500}) is False
    assert still_improving({"steps": 1500}) is None  # no best kept: nothing to say


def test_reference_is_base_or_a_named_cell_and_says_which_names_exist():
    ctx = SimpleNamespace(
        study="toy",
        base=BASE,
        cells={"k=32": {"named": False, "params": {**BASE, "k": 32}}, "sdpa": {"named": True, "params": {"k": 1}}},
    )
    assert reference_params(ctx, "base") is BASE
    assert reference_params(ctx, "sdpa") == {"k": 1}
    with pytest.raises(ValueError, match=r"report_reference='k=32'.*\(sdpa\)"):
        reference_params(ctx, "k=32")


# A summary as the reports write it: a lower-better ppl, a higher-better top1, seeds n, a text column.
PAPER_ROWS = [
    {"cell": "sdpa_conv", "n": 3, "ppl": 20.0, "ppl_sd": 0.1, "top1": 0.61, "note": "50% of k & w_2"},
    {"cell": "ska", "n": 1, "ppl": 18.5, "ppl_sd": None, "top1": 0.58, "note": "k × w"},
    {"cell": "base", "n": 2, "ppl": 19.0, "ppl_sd": 0.2, "top1": 0.64, "note": None},
]


def _tex_rows(tmp_path, rows=PAPER_ROWS, sort_by="ppl", **kw) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The .tex write_table writes, as lines and as cell → column → LaTeX cell text."""
    write_table(rows, tmp_path / "summary", sort_by=sort_by, **kw)
    lines = (tmp_path / "summary.tex").read_text().splitlines()
    header = lines.index(r"\toprule") + 1
    columns = lines[header].removesuffix(r" \\").replace(r"\_", "_").split(" & ")  # the rows' own names
    body = lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")]
    cells = [dict(zip(columns, line.removesuffix(r" \\").split(" & "), strict=True)) for line in body]
    return lines, {c["cell"]: c for c in cells}


def test_every_table_has_a_booktabs_latex_twin_with_the_same_rows(tmp_path):
    lines, cells = _tex_rows(tmp_path)
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "summary.md").is_file()
    assert [ln for ln in lines if ln.startswith("\\") and not ln.startswith("\\begin")][:2] == [
        r"\toprule",
        r"\midrule",
    ]
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert lines[lines.index(r"\toprule") - 1] == r"\begin{tabular}{lrrrl}"  # text left, numbers right
    assert list(cells) == ["ska", "base", "sdpa\\_conv"]  # sorted by ppl, as the CSV
    assert lines[lines.index(r"\toprule") + 1] == r"cell & n & ppl & top1 & note \\"  # ppl_sd folded into ppl


def test_the_best_value_is_bold_by_each_columns_direction(tmp_path):
    """Lower ppl is better (ska, 18.5), higher top1 is better (base, 0.64); n has no direction."""
    _, cells = _tex_rows(tmp_path)
    bold = {(cell, col) for cell, row in cells.items() for col, text in row.items() if r"\mathbf" in text}
    assert bold == {("ska", "ppl"), ("base", "top1")}
    assert cells["ska"]["ppl"] == r"$\mathbf{18.5000}$"
    assert cells["base"]["top1"] == r"$\mathbf{0.6400}$"


def test_a_callers_direction_overrides_the_name_and_none_marks_nothing(tmp_path):
    _, cells = _tex_rows(tmp_path, better={"ppl": "max", "top1": None})
    bold = {(cell, col) for cell, row in cells.items() for col, text in row.items() if r"\mathbf" in text}
    assert bold == {("sdpa\\_conv", "ppl")}


def test_ties_as_printed_are_all_bold(tmp_path):
    rows = [{"cell": "a", "acc": 0.70001}, {"cell": "b", "acc": 0.69999}, {"cell": "c", "acc": 0.5}]
    _, cells = _tex_rows(tmp_path, rows=rows, sort_by="cell")  # both print as 0.7000
    assert [cells[c]["acc"] for c in "abc"] == [r"$\mathbf{0.7000}$", r"$\mathbf{0.7000}$", "$0.5000$"]


def test_mean_shows_its_95_ci_over_seeds_and_one_seed_shows_no_pm(tmp_path):
    """n = 3, s.d. 0.1: t(0.975, 2) · 0.1 / √3 = 4.3027 · 0.0577 = 0.2484; n = 2, s.d. 0.2:
    12.7062 · 0.2 / √2 = 1.7969; n = 1: the mean alone (never ± 0)."""
    lines, cells = _tex_rows(tmp_path)
    assert lines[0] == "% ± (ppl): the 95 % CI of the mean over n seeds (Student t); none where n = 1"
    assert cells["sdpa\\_conv"]["ppl"] == r"$20.0000 \pm 0.2484$"
    assert cells["base"]["ppl"] == r"$19.0000 \pm 1.7969$"
    assert r"\pm" not in cells["ska"]["ppl"]


def test_counts_print_whole_and_rates_keep_their_decimals(tmp_path):
    """n_params averaged over seeds is a whole float: no decimals; an accuracy of exactly 0 or 1
    is a rate and keeps them, as does a count column with a fraction in it."""
    rows = [
        {"cell": "a", "n_params": 3216.0, "acc": 1.0, "best_step": 1.5},
        {"cell": "b", "n_params": 5361.0, "acc": 0.0, "best_step": 2.0},
    ]
    lines, cells = _tex_rows(tmp_path, rows=rows, sort_by="cell")
    assert r"cell & n\_params & acc & best\_step \\" in lines  # column names escaped too
    assert not any(line.startswith("% ±") for line in lines)  # no s.d., no ± to explain
    assert [cells["a"][c] for c in ("n_params", "acc", "best_step")] == ["$3216$", r"$\mathbf{1.0000}$", "$1.5000$"]
    assert [cells["b"][c] for c in ("n_params", "acc", "best_step")] == ["$5361$", "$0.0000$", "$2.0000$"]


def test_a_full_precision_table_prints_four_significant_digits_with_powers_of_ten(tmp_path):
    """Parity errors (digits=None) are unrounded in the CSV and markdown; the paper gets 4.47 × 10^-8."""
    rows = [
        {"cell": "keops", "z_max_abs_err": 4.470348358154297e-08},
        {"cell": "python", "z_max_abs_err": 0.00192},
    ]
    _, cells = _tex_rows(tmp_path, rows=rows, sort_by="cell", digits=None)
    assert cells["keops"]["z_max_abs_err"] == r"$4.47 \times 10^{-8}$"
    assert cells["python"]["z_max_abs_err"] == "$0.00192$"
    assert float((tmp_path / "summary.csv").read_text().splitlines()[1].split(",")[1]) == 4.470348358154297e-08


def test_latex_specials_in_cell_text_and_names_are_escaped(tmp_path):
    _, cells = _tex_rows(tmp_path)
    assert cells["sdpa\\_conv"]["note"] == r"50\% of k \& w\_2"
    assert cells["ska"]["note"] == r"k $\times$ w"
    assert cells["base"]["note"] == "--"  # missing, not "None"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine installed")
def test_the_latex_table_compiles(tmp_path):
    write_table(PAPER_ROWS, tmp_path / "summary", sort_by="ppl")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs}\\usepackage{amsmath}"
        "\\begin{document}\\input{summary.tex}\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
