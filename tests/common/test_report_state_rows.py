"""The ranking report built from the cells that finished: each other cell is a row with its state
(what the runner passes as ``ctx.cells[cell]["state"]``), in the per-cell table and the summary,
and a missing reference cell leaves the summary without differences instead of failing it."""

import csv
import json

import pytest

from pipeline.spec import Context, Params, Upstream
from stages.common import ranking_report

OOM = "OOM (peak 61.2 GB)"
FAILED = "failed (exit 1: RuntimeError: boom)"


def context(tmp_path, states: dict[str, str]) -> Context:
    """Four cells (lr × seed), lr=0.1 the base; ``states``: the cells that did not finish."""
    cells, upstream = {}, []
    for lr in (0.1, 0.2):
        for seed in (0, 1):
            name = f"lr={lr},train_seed={seed}"
            cells[name] = {"named": False, "params": {"lr": lr, "train_seed": seed}}
            if name in states:
                cells[name]["state"] = states[name]
                continue
            for stage, metrics in (("train", {"steps": 10}), ("evaluate", {"top1": lr + seed / 100})):
                d = tmp_path / stage / name
                d.mkdir(parents=True)
                (d / "meta.json").write_text(json.dumps({"metrics": metrics}))
                (d / "history.json").write_text(json.dumps([{"step": 0, "loss": 1.0}, {"step": 9, "loss": 0.5}]))
                upstream.append(Upstream(stage, name, d, (name,)))
    out = tmp_path / "out"
    out.mkdir()
    params = {"report_metric": "top1", "report_goal": "max", "report_replicates": "train_seed"}
    return Context(
        params=Params({**params, "report_reference": "base"}, "report"),
        out=out,
        upstream=tuple(upstream),
        study="s",
        cells=cells,
        base={"lr": 0.1, "train_seed": 0},
    )


def read(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_unfinished_cells_are_rows_with_their_state_after_the_ranked_ones(tmp_path):
    ctx = context(tmp_path, {"lr=0.2,train_seed=1": OOM})
    ranking_report.run(ctx)
    table = read(ctx.out / "table.csv")
    assert [(r["cell"], r["state"]) for r in table] == [
        ("lr=0.2,train_seed=0", ""),
        ("lr=0.1,train_seed=1", ""),
        ("lr=0.1,train_seed=0", ""),
        ("lr=0.2,train_seed=1", OOM),
    ]
    assert table[-1]["top1"] == "" and float(table[0]["top1"]) == pytest.approx(0.2)
    summary = read(ctx.out / "summary.csv")
    assert [(r["cell"], r["n"], r["state"]) for r in summary] == [
        ("lr=0.2", "1", ""),
        ("lr=0.1", "2", ""),
        ("lr=0.2,train_seed=1", "", OOM),
    ]
    assert float(summary[0]["top1_diff"]) == pytest.approx(0.2 - 0.105)


def test_a_failed_reference_cell_leaves_the_summary_without_differences(tmp_path):
    states = {"lr=0.1,train_seed=0": FAILED, "lr=0.1,train_seed=1": OOM}
    ctx = context(tmp_path, states)
    ranking_report.run(ctx)
    summary = read(ctx.out / "summary.csv")
    assert [(r["cell"], r["state"]) for r in summary] == [("lr=0.2", ""), *states.items()]
    assert "top1_diff" not in summary[0]


def test_with_every_cell_finished_a_missing_reference_is_still_an_error(tmp_path):
    ctx = context(tmp_path, {})
    ctx.base["lr"] = 0.3
    with pytest.raises(ValueError, match="no cell has the reference params"):
        ranking_report.run(ctx)
