"""W&B sweep configs: loaded by wandb's own parser, and every grid point names one cell."""

import itertools

import pytest

from ablate import main
from pipeline.codehash import ROOT
from pipeline.params import ParamsError
from pipeline.plan import build
from pipeline.sweep import cell_from_args
from stages import RECIPES


@pytest.mark.parametrize("study", ["ska_lm", "ska_minhash"])
def test_sweep_config_loads_in_wandb_and_covers_exactly_the_grid(tmp_path, study):
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    out = tmp_path / f"{study}.yaml"
    assert main(["sweep", study, "--out", str(out)]) == 0
    config = load_sweep_config(str(out))
    assert config["method"] == "grid" and config["command"][-1] == "${args}"
    plan = build(ROOT / "params.yaml", RECIPES)
    grid = [c.name for c in plan.studies[study].cells if not c.named]
    names = config["parameters"]
    combos = [
        dict(zip(names, values, strict=False)) for values in itertools.product(*(p["values"] for p in names.values()))
    ]
    found = [cell_from_args(plan.studies[study], {k: str(v) for k, v in combo.items()}).name for combo in combos]
    assert sorted(found) == sorted(grid)  # one run per grid cell, no more, no fewer
    assert config["metric"]["name"].split("/")[0] in plan.stages[plan.studies[study].kind]


def test_cell_args_must_name_every_axis_with_a_grid_value():
    study = build(ROOT / "params.yaml", RECIPES).studies["ska_lm"]
    good = {
        "minhash_k": "32",
        "bank": "window=32,stride=16",
        "router_topk": "0",
        "adapter_rank": "0",
    }
    assert cell_from_args(study, good).name == "minhash_k=32,window=32,stride=16,router_topk=0,adapter_rank=0"
    with pytest.raises(ParamsError, match="no value given for axis adapter_rank"):
        cell_from_args(study, {k: v for k, v in good.items() if k != "adapter_rank"})
    with pytest.raises(ParamsError, match="no cell with"):
        cell_from_args(study, {**good, "minhash_k": "33"})
    with pytest.raises(ParamsError, match="not an axis: lr"):
        cell_from_args(study, {**good, "lr": "0.1"})
