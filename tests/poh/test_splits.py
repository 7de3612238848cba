"""Both PoH studies, run stage by stage on tiny data: checkpoint selection sees only the val
split, the evaluate stage (and so the report) scores only the test split.

The real stage functions run in order, as the pipeline would, on nodes planned from the
shipped study with tiny overrides; the task's evaluate function is wrapped to record which
split each call was handed and what it returned.
"""

import importlib
import json

import numpy as np
import pytest
import yaml

from pipeline.codehash import ROOT
from pipeline.plan import build
from pipeline.spec import Context, Params, Upstream
from stages import RECIPES
from stages.common.trained import load_trained
from studies.data import sudoku
from studies.poh import maze_task, sudoku_task


def tiny_study(tmp_path, study: str, params: dict, grid: dict):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"][study]
    raw = {"description": raw["description"], "params": raw["params"] | params, "grid": grid}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"studies": {study: raw}}, sort_keys=False))
    return build(path, RECIPES)


def load(path) -> dict:
    with np.load(path) as f:
        return {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}


class Spy:
    """Wraps a task's evaluate function: records the split handed in and the metrics out."""

    def __init__(self, fn, key):
        self.fn, self.key, self.calls = fn, key, []

    def __call__(self, model, data, *args, **kwargs):
        metrics = self.fn(model, data, *args, **kwargs)
        self.calls.append((self.key(data), metrics))
        return metrics

    def take(self):
        calls, self.calls = self.calls, []
        return calls


def sudoku_key(data):
    return tuple(r.tobytes() for r in np.asarray(data["puzzles"], np.uint8))


def maze_key(data):
    return tuple(maze_task.maze_keys(data))


def test_poh_injection_selects_on_val_and_reports_test(tmp_path, monkeypatch):
    g = sudoku.generate(38, seed=11, max_givens=40, target_givens=38, progress=False)
    rows = [
        f"s,{sudoku.to_string(q)},{sudoku.to_string(a)},0" for q, a in zip(g["puzzles"], g["solutions"], strict=True)
    ]
    header = "source,question,answer,rating\n"
    (tmp_path / "train.csv").write_text(header + "\n".join(rows[:30]) + "\n")
    (tmp_path / "test.csv").write_text(header + "\n".join(rows[30:]) + "\n")
    plan = tiny_study(
        tmp_path,
        "poh_injection",
        {
            "sudoku_source": "csv", "sudoku_csv": str(tmp_path / "train.csv"),
            "sudoku_test_csv": str(tmp_path / "test.csv"), "n_puzzles": 24, "n_val": 6, "n_test": 0,
            "d_model": 16, "n_heads": 2, "d_ff": 32, "memory_size": 4, "steps": 6, "batch_size": 8,
            "eval_every": 1, "lr": 1.0e-2, "warmup_frac": 0.0,
        },
        {"injection": ["none"]},
    )  # fmt: skip
    spy = Spy(sudoku_task.evaluate_sudoku, sudoku_key)
    monkeypatch.setattr(sudoku_task, "evaluate_sudoku", spy)
    root = tmp_path / "artifacts"
    done = {}
    for node in plan.nodes.values():
        done |= run_all_one(plan, node, root, done)
        if node.stage == "train":
            train_calls = spy.take()
        elif node.stage == "evaluate":
            eval_calls = spy.take()
    data_dir = done["sudoku_data"][0]
    val, test = load(data_dir / "val.npz"), load(data_dir / "test.npz")
    assert len(val["puzzles"]) == 6 and len(test["puzzles"]) == 8
    assert sudoku_key(test) == sudoku_key({"puzzles": g["puzzles"][30:]})  # the test file, whole

    # selection: six evaluations during training, every one on the val split
    assert [k for k, _ in train_calls] == [sudoku_key(val)] * 6
    history = json.loads((done["train"][0] / "val_history.json").read_text())
    assert [{k: h[k] for k in m} for h, (_, m) in zip(history, train_calls, strict=True)] == [m for _, m in train_calls]
    best = max(history, key=lambda h: (h["grid_acc"], h["cell_acc"]))  # first of equal maxima, as the loop keeps
    train_metrics = done["train"][1]
    assert (train_metrics["best_step"], train_metrics["best_val_cell_acc"]) == (best["step"], best["cell_acc"])
    # the kept state is the one val chose: re-scoring it on val gives the best entry's numbers
    model, _ = load_trained(done["train"][0], sudoku_task.build_sudoku_model)
    assert spy.fn(model, val)["cell_acc"] == pytest.approx(best["cell_acc"])

    # evaluation: one call, on the test split; the report ranks by that call's numbers
    assert [k for k, _ in eval_calls] == [sudoku_key(test)]
    test_metrics = eval_calls[0][1]
    metric = plan.studies["poh_injection"].params["report_metric"]
    assert metric.startswith("test_") and metric not in train_metrics
    assert done["evaluate"][1][metric] == test_metrics[metric.removeprefix("test_")]
    assert done["report"][1][f"best_{metric}"] == pytest.approx(test_metrics[metric.removeprefix("test_")])


def test_poh_scaling_selects_on_val_and_reports_test(tmp_path, monkeypatch):
    plan = tiny_study(
        tmp_path,
        "poh_scaling",
        {
            "maze_n": 4, "n_mazes": 40, "n_val": 8, "n_test": 10, "d_model": 16, "d_ff": 32, "depth": 1,
            "R": 2, "T": 2, "steps": 6, "batch_size": 8, "eval_every": 1, "lr": 1.0e-2, "warmup_frac": 0.0,
        },
        {"model": [{"size": "A", "d_model": 16, "d_ff": 32, "depth": 1}], "kind": ["baseline"]},
    )  # fmt: skip
    spy = Spy(maze_task.evaluate_maze, maze_key)
    monkeypatch.setattr(maze_task, "evaluate_maze", spy)
    root = tmp_path / "artifacts"
    done = {}
    for node in plan.nodes.values():
        done |= run_all_one(plan, node, root, done)
        if node.stage == "train":
            train_calls = spy.take()
        elif node.stage == "evaluate":
            eval_calls = spy.take()
    data_dir = done["maze_data"][0]
    val, test = load(data_dir / "val.npz"), load(data_dir / "test.npz")
    assert len(val["start"]) == 8 and len(test["start"]) == 10

    assert [k for k, _ in train_calls] == [maze_key(val)] * 6
    results = [m for _, m in train_calls]
    best_i = max(range(6), key=lambda i: ((results[i]["acc"], results[i]["opt"]), -i))  # first of equal maxima
    train_metrics = done["train"][1]
    assert train_metrics["best_step"] == best_i
    assert (train_metrics["best_val_acc"], train_metrics["best_val_opt"]) == (
        results[best_i]["acc"],
        results[best_i]["opt"],
    )
    assert train_metrics["final_val_loss"] == pytest.approx(results[-1]["loss"])

    assert [k for k, _ in eval_calls] == [maze_key(test)]
    test_metrics = eval_calls[0][1]
    evaluate = done["evaluate"][1]
    assert (evaluate["test_acc"], evaluate["test_opt"]) == (test_metrics["acc"], test_metrics["opt"])
    report = json.loads((done["report"][0] / "results.json").read_text())
    (row,) = [r for r in report["rows"] if r["kind"] == "baseline"]
    assert (row["n"], row["acc"], row["opt"]) == (1, test_metrics["acc"], test_metrics["opt"])


def run_all_one(plan, node, root, done) -> dict:
    """Run one node whose upstream is in `done` (stage → (dir, metrics)); returns its entry."""
    out = root / node.stage / node.slug
    out.mkdir(parents=True)
    upstream = tuple(Upstream(s, u, done[s][0], plan.nodes[node.study, s, u].cells) for s, u in node.upstream)
    ctx = Context(
        Params(node.params, node.stage), out, upstream, node.study,
        cells=node.parts.get("cells", {}), base=node.parts.get("base", {}),
    )  # fmt: skip
    metrics = importlib.import_module(node.module).run(ctx) or {}
    (out / "meta.json").write_text(json.dumps({"metrics": metrics}))
    return {node.stage: (out, metrics)}
