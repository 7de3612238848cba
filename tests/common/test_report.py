"""Report helpers on fixed rows: replicate averaging and the one-factor-at-a-time view."""

import math

import pytest

from studies.report import one_factor_bars, one_factor_rows, replicate_summary

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
    assert summary["sdpa"]["replicates"] == 2 and summary["sdpa"]["ppl"] == 25.0
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
    assert summary["a"]["gate"] == 0.1 and summary["a"]["gate_sd"] == 0.0  # one of two cells has it
    assert summary["s"]["gate"] is None and summary["s"]["gate_sd"] is None
