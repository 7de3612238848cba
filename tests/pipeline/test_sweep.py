"""W&B sweep configs: loaded by wandb's own parser, a run per cell of the study (the named
baselines included), the metric named exactly as `ablate cell` logs it, the goal the study's."""

import json
import sys

import pytest
import yaml

from ablate import main
from pipeline.codehash import ROOT
from pipeline.params import ParamsError
from pipeline.plan import build
from pipeline.sweep import cell_from_args
from stages import RECIPES

STUDIES = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]
RANKED = [s for s, body in STUDIES.items() if "report_metric" in body["params"]]  # a report ranks by one metric
UNRANKED = [s for s in STUDIES if s not in RANKED]


def write_sweep(study, out, *flags, params=ROOT / "params.yaml"):
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    assert main(["--params", str(params), "sweep", study, "--out", str(out), *flags]) == 0
    return load_sweep_config(str(out))


def test_every_shipped_study_is_either_ranked_or_refused():
    """The two tables below cover params.yaml: the ranked studies include the headline ones."""
    assert {"ska_lm", "ska_vit", "poh_injection"} <= set(RANKED)
    assert {"ska_minhash", "ska_bench", "ska_parity"} <= set(UNRANKED)


@pytest.mark.parametrize("study", RANKED)
def test_sweep_runs_every_cell_grid_and_named(tmp_path, study):
    config = write_sweep(study, tmp_path / f"{study}.yaml")
    assert config["method"] == "grid" and config["command"][-1] == "${args}"
    plan_study = build(ROOT / "params.yaml", RECIPES).studies[study]
    values = config["parameters"]["cell"]["values"]
    assert values == [c.name for c in plan_study.cells]  # one run per cell, no more, no fewer
    assert [cell_from_args(plan_study, {"cell": v}).name for v in values] == values
    named = [c.name for c in plan_study.cells if c.named]
    assert set(named) <= set(values)
    header = (tmp_path / f"{study}.yaml").read_text().split("\nname:")[0]
    assert f"{len(named)} named" in header and all(n in header for n in named)


def test_the_sdpa_baseline_is_a_run_of_the_lm_sweep(tmp_path):
    assert "sdpa" in write_sweep("ska_lm", tmp_path / "s.yaml")["parameters"]["cell"]["values"]


@pytest.mark.parametrize("study", [s for s in RANKED if "report_goal" in STUDIES[s]["params"]])
def test_goal_follows_the_studys_report_goal(tmp_path, study):
    config = write_sweep(study, tmp_path / f"{study}.yaml")
    assert config["metric"]["goal"] == {"max": "maximize", "min": "minimize"}[STUDIES[study]["params"]["report_goal"]]
    assert config["metric"]["name"].endswith("/" + STUDIES[study]["params"]["report_metric"])


def test_accuracy_is_maximised_and_perplexity_minimised(tmp_path):
    assert write_sweep("ska_vit", tmp_path / "v.yaml")["metric"] == {"name": "evaluate/top1", "goal": "maximize"}
    lm = write_sweep("ska_lm", tmp_path / "l.yaml")["metric"]
    assert lm == {"name": "evaluate/test_perplexity", "goal": "minimize"}


@pytest.mark.parametrize("study", UNRANKED)
def test_a_study_with_no_report_metric_is_refused_naming_why(tmp_path, capsys, study):
    out = tmp_path / f"{study}.yaml"
    assert main(["sweep", study, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"studies.{study}.params.report_metric: not set" in err and "--metric STAGE/KEY" in err
    assert "Traceback" not in err and not out.exists()


def test_report_goal_is_not_applied_to_another_metric(tmp_path, capsys):
    """ska_setrecall maximises its recall accuracy; a sweep on its train loss minimises."""
    config = write_sweep("ska_setrecall", tmp_path / "s.yaml", "--metric", "train/train_loss")
    assert config["metric"] == {"name": "train/train_loss", "goal": "minimize"}
    assert main(["sweep", "ska_bench", "--metric", "bench/steps_per_s", "--out", str(tmp_path / "b.yaml")]) == 2
    assert "--goal: needed: 'bench/steps_per_s' is not the report_metric" in capsys.readouterr().err


def test_a_given_metric_must_name_a_stage_the_cell_logs(tmp_path, capsys):
    config = write_sweep("ska_bench", tmp_path / "b.yaml", "--metric", "bench/steps_per_s", "--goal", "maximize")
    assert config["metric"] == {"name": "bench/steps_per_s", "goal": "maximize"}
    assert main(["sweep", "ska_bench", "--metric", "steps_per_s", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "STAGE one of bench" in capsys.readouterr().err


def tiny_params(tmp_path):
    """params.yaml shrunk as the recipes build test shrinks it (a few steps, tiny data)."""
    sys.path.insert(0, str(ROOT / "tests" / "common"))
    from test_recipes_build import shrunk_params

    params, problems = shrunk_params()
    assert not problems, problems
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.parametrize("study", RANKED)
def test_the_sweep_metric_is_one_ablate_cell_logs(tmp_path, study, shrunk_store):
    """Builds the sweep's first named cell (else its first) of the tiny study with the sweep's
    own command, `ablate cell STUDY --cell=NAME`, and finds the sweep's metric among what it
    logs (W&B disabled: the command prints the dict it would log)."""
    params = tiny_params(tmp_path)
    config = write_sweep(study, tmp_path / "sweep.yaml", params=params)
    plan_study = build(params, RECIPES).studies[study]
    cell = next((c for c in plan_study.cells if c.named), plan_study.cells[0]).name
    sys.path.insert(0, str(ROOT / "tests" / "common"))
    from test_recipes_build import ablate_cell

    # the tiny builds' session store: their cells are store hits here; W&B disabled prints the dict
    proc = ablate_cell(params, study, cell, tmp_path / "artifacts", shrunk_store, "disabled")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = "\n" + proc.stdout  # after any build output: the logged dict, as indented JSON
    logged = json.loads(printed[printed.rindex("\n{") :])
    assert config["metric"]["name"] in logged, sorted(logged)


def test_cell_args_name_a_cell_or_every_grid_axis():
    study = build(ROOT / "params.yaml", RECIPES).studies["ska_lm"]
    good = {
        "minhash_k": "32",
        "bank": "window=32,stride=16",
        "router_topk": "0",
        "adapter_rank": "0",
    }
    assert cell_from_args(study, good).name == "minhash_k=32,window=32,stride=16,router_topk=0,adapter_rank=0"
    assert cell_from_args(study, {"cell": "sdpa"}).params["attention"] == "sdpa"
    with pytest.raises(ParamsError, match="no cell 'sdpaa' \\(named cells: sdpa, "):
        cell_from_args(study, {"cell": "sdpaa"})
    with pytest.raises(ParamsError, match="--cell names the whole cell"):
        cell_from_args(study, {"cell": "sdpa", "lr": "0.1"})
    with pytest.raises(ParamsError, match="no value given for axis adapter_rank"):
        cell_from_args(study, {k: v for k, v in good.items() if k != "adapter_rank"})
    with pytest.raises(ParamsError, match=r"grid.minhash_k: '33' is not a value of this axis; allowed: 32, 64"):
        cell_from_args(study, {**good, "minhash_k": "33"})
    with pytest.raises(ParamsError, match="not an axis: lr"):
        cell_from_args(study, {**good, "lr": "0.1"})
