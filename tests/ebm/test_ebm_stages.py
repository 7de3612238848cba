"""The EBM studies' stages: the held-out interpretability set, and bad input refused with an
error that names the row or key before anything is published."""

import json

import numpy as np
import pytest
import yaml

from pipeline import plan, runner
from pipeline.params import ParamsError
from stages import RECIPES
from stages.ebm.interp import held_out
from studies.data import sudoku
from studies.ebm.checks import check_unique
from studies.poh.sudoku_task import three_way_split


@pytest.fixture(scope="module")
def splits():
    data = sudoku.generate(30, seed=3, max_givens=45, target_givens=45, progress=False)
    return dict(zip(("train", "val", "test"), three_way_split(data, 5, 8, 0), strict=True))


def keys(puzzles):
    return {r.tobytes() for r in sudoku.canonical(puzzles)}


def test_interp_puzzles_are_the_first_test_puzzles_and_disjoint_from_train(splits):
    picked = held_out(splits["train"], splits["test"], 5)
    assert (picked["puzzles"] == splits["test"]["puzzles"][:5]).all()
    assert not keys(picked["puzzles"]) & keys(splits["train"]["puzzles"])  # by content, up to the symmetries
    assert not {r.tobytes() for r in picked["puzzles"]} & {r.tobytes() for r in splits["train"]["puzzles"]}


def test_an_interp_puzzle_equal_to_a_train_puzzle_up_to_relabelling_and_transpose_is_refused(splits):
    test = {k: v.copy() for k, v in splits["test"].items()}
    digits = np.array([0, 4, 7, 1, 9, 2, 5, 3, 8, 6])
    copy = digits[splits["train"]["puzzles"][2]].reshape(9, 9).T.reshape(81)  # relabelled and transposed
    test["puzzles"][1] = copy
    assert not (copy == splits["train"]["puzzles"]).all(1).any()  # not an exact copy
    with pytest.raises(ValueError, match="1 interpretability puzzles equal a training puzzle"):
        held_out(splits["train"], test, 3)
    held_out(splits["train"], test, 1)  # the copy is row 1: a set of one excludes it
    with pytest.raises(ValueError, match=r"interp_n=9 must be in \[1, 8\]"):
        held_out(splits["train"], test, 9)


def test_puzzles_with_no_or_several_solutions_are_named_by_row(splits):
    puzzles = splits["test"]["puzzles"].copy()
    check_unique(puzzles, "test")  # generated puzzles are unique
    several = puzzles.copy()
    several[3] = 0  # the empty grid: many solutions
    with pytest.raises(ValueError, match="test: row 3 has several solutions"):
        check_unique(several, "test")
    none = puzzles.copy()
    row = none[5].reshape(9, 9)
    blank = np.flatnonzero(row[0] == 0)[0]
    row[0, blank] = row[0][row[0] > 0][0]  # a digit twice in row 0
    with pytest.raises(ValueError, match="test: row 5 has no solution"):
        check_unique(none, "test")


def study_params(tmp_path, **overrides):
    """params.yaml holding only ebm_sudoku, with overrides of its base params."""
    params = yaml.safe_load(open(plan.project.root() / "params.yaml"))
    study = params["studies"]["ebm_sudoku"]
    study["params"].update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"studies": {"ebm_sudoku": study}}, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [("report_metric", "test_oracle_z_blank_acc"), ("select_mode", "oracle_z"), ("select_mode", "langevn")],
)
def test_an_oracle_or_unknown_decoding_mode_is_refused_naming_the_key(tmp_path, key, value):
    with pytest.raises(ParamsError, match=rf"studies\.ebm_sudoku\.params\.{key}: '{value}' is not allowed"):
        plan.build(study_params(tmp_path, **{key: value}), RECIPES)


def test_a_malformed_csv_row_fails_the_data_node_naming_the_row_and_publishes_nothing(tmp_path, monkeypatch, capfd):
    data = sudoku.generate(6, seed=4, max_givens=45, target_givens=45, progress=False)
    lines = [
        f"{sudoku.to_string(p, blank='0')},{sudoku.to_string(s)}"
        for p, s in zip(data["puzzles"], data["solutions"], strict=True)
    ]
    lines[3] = lines[3][:80] + lines[3][81:]  # row 3: an 80-char puzzle
    train = tmp_path / "train.csv"
    train.write_text("puzzle,solution\n" + "\n".join(lines) + "\n")
    test = tmp_path / "test.csv"
    test.write_text("puzzle,solution\n" + "\n".join(lines[4:]) + "\n")
    params = study_params(
        tmp_path, sudoku_source="csv", sudoku_csv=str(train), sudoku_test_csv=str(test), n_puzzles=3, n_val=1, n_test=0
    )
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ABLATE_STORE", str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    code = runner.main(RECIPES, ["ebm_sudoku", "sudoku_data", "base", "--params", str(params)])
    out = capfd.readouterr()
    assert code != 0
    assert "row 3 (file line 5) has 80 chars, expected 81" in out.out + out.err
    assert not (tmp_path / "artifacts" / "ebm_sudoku" / "sudoku_data" / "base" / "meta.json").exists()
    assert not [p for p in (tmp_path / "store").rglob("meta.json")]
    log = tmp_path / "artifacts" / ".logs" / "builds.jsonl"
    assert not log.exists() or all(json.loads(x)["action"] != "computed" for x in log.read_text().splitlines())


def train_context(tmp_path, params, puzzles, val_puzzles=None):
    """The train stage's Context over a sudoku_data folder holding `puzzles` as train and val."""
    from pipeline.spec import Context, Params, Upstream
    from stages.ebm import train

    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "val"):
        arrays = {k: puzzles[k] for k in ("puzzles", "solutions")}
        if name == "val" and val_puzzles is not None:
            arrays["puzzles"] = val_puzzles
        np.savez(data / f"{name}.npz", **arrays)
    out = tmp_path / "out"
    out.mkdir()
    return Context(
        Params({k: params[k] for k in train.SPEC.reads}, "train"),
        out,
        (Upstream("sudoku_data", "base", data, ()),),
        "ebm_sudoku",
    )


def test_training_refuses_a_validation_puzzle_without_exactly_one_solution_before_any_step(tmp_path):
    """Checkpoint selection scores boards against the one stored solution, so a val puzzle with
    several solutions would misjudge it: the train stage names the row and trains nothing."""
    from stages.ebm import train

    params = yaml.safe_load(open(plan.project.root() / "params.yaml"))["studies"]["ebm_sudoku"]["params"]
    puzzles = sudoku.generate(4, seed=2, max_givens=45, target_givens=45, progress=False)
    val = puzzles["puzzles"].copy()
    val[2] = 0  # the empty grid
    ctx = train_context(tmp_path, params | {"steps": 1, "batch_size": 2}, puzzles, val)
    with pytest.raises(ValueError, match="sudoku_data val split: row 2 has several solutions"):
        train.run(ctx)
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("size", ["paper_7m", "paper_36m"])
def test_the_paper_config_trains_one_cpu_step_through_the_train_stage(tmp_path, size):
    """configs/paper.yaml's ebm_sudoku (bf16 mixed precision, both grid sizes) run by the train
    stage itself for one step on a batch of 2, so the paper config cannot rot."""
    from stages.ebm import train

    paper = yaml.safe_load(open(plan.project.root() / "configs" / "paper.yaml"))["studies"]["ebm_sudoku"]
    assert size in paper["grid"]["model_size"] and paper["params"]["precision"] == "bf16"
    params = paper["params"] | {"model_size": size, "steps": 1, "batch_size": 2, "eval_every": 1}
    puzzles = sudoku.generate(4, seed=2, max_givens=45, target_givens=45, progress=False)
    ctx = train_context(tmp_path, params, puzzles)
    out = tmp_path / "out"
    metrics = train.run(ctx)
    assert metrics["n_params"] == {"paper_7m": 7_471_945, "paper_36m": 36_505_481}[size]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
