"""`ablate memory-safe` is trustworthy: its probe (the cell's train stage run for PROBE_STEPS steps)
predicts the peak RSS a real build of the cell records, within ± 30 %, for every study with a
train stage.

Each study's first cell is trained for real with the tiny params of test_recipes_build, but for
TRAIN_STEPS steps (ten times the probe's), and its recorded ``peak_rss_mb`` is compared with the
probe's measurement of the same cell.
"""

import sys
from pathlib import Path

import pytest
import yaml

from pipeline import memory, record, runner
from pipeline.codehash import ROOT
from pipeline.plan import build
from pipeline.store import Store
from stages import RECIPES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_recipes_build import shrunk_params  # noqa: E402

TRAIN_STEPS = 10 * memory.PROBE_STEPS
TOLERANCE = 0.30


def trained_studies() -> list[str]:
    """Every study of params.yaml whose recipe has a train stage."""
    plan = build(ROOT / "params.yaml", RECIPES)
    return [name for name, study in plan.studies.items() if memory.TRAIN in plan.stages[study.kind]]


def test_every_study_with_a_train_stage_is_probed_here():
    shrunk, problems = shrunk_params()
    missing = [s for s in trained_studies() if s not in shrunk["studies"]]
    assert not missing, f"no tiny params for {missing}: {problems}"
    assert len(trained_studies()) >= 7  # lm, setrecall, vit, diffusion, text diffusion, sudoku, maze


@pytest.mark.parametrize("study", trained_studies())
def test_probe_predicts_the_recorded_peak_of_a_real_build(study, tmp_path, monkeypatch):
    shrunk, _ = shrunk_params()
    spec = shrunk["studies"][study]
    spec["params"]["steps"] = TRAIN_STEPS
    spec.pop("grid", None)  # one cell: the base params
    spec.pop("cells", None)
    spec.pop("exclude", None)
    if "report_reference" in spec["params"]:  # its named cell is gone: the base is the one cell
        spec["params"]["report_reference"] = "base"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"studies": {study: spec}}, sort_keys=False))
    for key, value in {
        "ABLATE_ARTIFACTS": str(tmp_path / "artifacts"),
        "ABLATE_STORE": str(tmp_path / "store"),
        "ABLATE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(key, value)
    plan = build(params, RECIPES)
    cell = plan.studies[study].cells[0]
    node, store = memory.train_node(plan, study, cell.name), Store()
    probed = memory.probe_peak_mb(plan, node, store, "cpu")  # builds the upstream into the store first
    assert memory.recorded_peak_mb(node, store, "cpu") is None  # the probe stores nothing of its own
    assert runner.build(record.of_node(plan, node), store, workspace=False) == 0
    recorded = memory.recorded_peak_mb(node, store, "cpu")
    assert node.params["steps"] == TRAIN_STEPS and recorded > 100  # python and torch alone take more
    print(f"{study}: probe {probed:.0f} MB, recorded {recorded:.0f} MB after {TRAIN_STEPS} steps")
    assert abs(probed - recorded) <= TOLERANCE * recorded, f"probe {probed:.0f} MB vs recorded {recorded:.0f} MB"
