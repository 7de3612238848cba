"""Planning the real ska_lm recipe: sharing, projection, paths, validation."""

import math
import subprocess
import sys
import textwrap

import pytest
import yaml

from pipeline import dvcgen
from pipeline.codehash import ROOT
from pipeline.params import ParamsError
from pipeline.plan import build
from stages import RECIPES
from stages.ska.lm_train import SPEC as LM_TRAIN

TRAIN_READS = LM_TRAIN.reads


def shipped_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def plan_of(tmp_path, edit=None):
    raw = shipped_params()
    if edit:
        edit(raw["studies"]["ska_lm"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # axis order makes slugs
    return build(path, RECIPES)


def stage_nodes(plan, stage, study="ska_lm"):
    return [n for n in plan.nodes.values() if n.stage == stage and n.study == study]


def test_default_grid_shares_tokenization_and_banks(tmp_path):
    plan = plan_of(tmp_path)
    study = plan.studies["ska_lm"]
    raw = shipped_params()["studies"]["ska_lm"]
    grid_size = math.prod(len(axis) for axis in raw["grid"].values())
    assert len(study.cells) == grid_size + len(raw["cells"])
    assert len(stage_nodes(plan, "tokenize")) == 1
    distinct_banks = {n.fingerprint for n in stage_nodes(plan, "banks")}
    assert len(distinct_banks) == 4  # minhash_k {32, 64} × two window/stride pairs; seeds share them
    # a named cell equal to a grid cell (`ska` = the base cell) shares its training; no other does
    projected = {tuple(sorted((k, repr(c.params[k])) for k in TRAIN_READS)) for c in study.cells}
    assert len({n.fingerprint for n in stage_nodes(plan, "train")}) == len(projected) < len(study.cells)


def test_named_cell_shares_the_fingerprint_of_the_matching_grid_banks(tmp_path):
    plan = plan_of(tmp_path)
    named = plan.node("ska_lm", "banks", "beta_off")
    grid = plan.node("ska_lm", "banks", "minhash_k=64,window=32,stride=16")  # seed does not reach banks
    assert named.fingerprint == grid.fingerprint
    assert named.workspace().name == "beta_off"  # its own path: what dvc.yaml's foreach names


def test_fingerprint_ignores_params_the_stage_does_not_read(tmp_path):
    before = plan_of(tmp_path)
    after = plan_of(tmp_path, lambda s: s["params"].update(lr=1.0e-2))
    for stage in ("download", "tokenize", "banks"):
        assert {n.fingerprint for n in stage_nodes(before, stage)} == {n.fingerprint for n in stage_nodes(after, stage)}
    base_lr = [c.name for c in before.studies["ska_lm"].cells if "lr" not in c.name]  # named lr cells keep theirs
    assert base_lr
    for cell in base_lr:
        assert before.node("ska_lm", "train", cell).fingerprint != after.node("ska_lm", "train", cell).fingerprint


def test_one_grid_value_changes_only_the_nodes_it_touches(tmp_path):
    before = plan_of(tmp_path)
    after = plan_of(tmp_path, lambda s: s["grid"].update(minhash_k=[32, 128]))
    changed = {
        k
        for k, n in after.nodes.items()
        if k[0] == "ska_lm" and (k not in before.nodes or before.nodes[k].fingerprint != n.fingerprint)
    }
    stages = sorted({stage for _, stage, _ in changed})
    assert stages == ["banks", "evaluate", "report", "train"]
    assert all("minhash_k=128" in slug for _, stage, slug in changed if stage != "report")
    half = math.prod(len(axis) for axis in shipped_params()["studies"]["ska_lm"]["grid"].values()) // 2
    assert len(changed) == 2 + half + half + 1  # 2 banks, the minhash_k=128 half of the grid twice, the report


def test_adding_a_single_valued_axis_renames_paths_but_keeps_every_fingerprint(tmp_path):
    before = plan_of(tmp_path)
    after = plan_of(tmp_path, lambda s: s["grid"].update(hash_seed=[0]))  # hash_seed is 0 in params

    def fingerprints(plan):
        return {n.fingerprint for n in plan.nodes.values() if n.stage != "report"}

    assert fingerprints(before) == fingerprints(after)  # nothing recomputes
    assert set(before.nodes) != set(after.nodes)  # though banks/train/evaluate slugs gained hash_seed=0
    # the report does change: its rows are named by the new slugs and gain a hash_seed column


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s["params"].update(attention="flash"),
            r"^studies.ska_lm.params.attention: 'flash' is not allowed; choose one of ska, sdpa",
        ),
        (
            lambda s: s["cells"].update(x={"attention": "flash"}),
            r"^studies.ska_lm.cells.x.attention: 'flash' is not allowed",
        ),
        (
            lambda s: s["params"].update(learning_rate=0.1),
            r"^studies.ska_lm.params.learning_rate: no stage of kind 'ska_lm' reads this key",
        ),
        (
            lambda s: s["params"].pop("weight_decay"),
            r"^studies.ska_lm.params.weight_decay: missing: stage 'train' reads it",
        ),
    ],
)
def test_stage_level_validation_names_the_key_path(tmp_path, edit, message):
    with pytest.raises(ParamsError, match=message):
        plan_of(tmp_path, edit)


def test_the_shipped_params_file_is_valid():
    assert build(ROOT / "params.yaml", RECIPES).nodes  # configs/: tests/pipeline/test_configs.py


def test_committed_dvc_yaml_matches_the_studies_structure():
    plan = build(ROOT / "params.yaml", RECIPES)
    assert dvcgen.is_current(plan, ROOT / "dvc.yaml"), "run `ablate dvc-yaml --write`"


def test_planning_does_not_import_torch_or_the_engines():
    code = textwrap.dedent(
        """
        import sys
        from pipeline.plan import build
        from stages import RECIPES
        build("params.yaml", RECIPES)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "datasets", "snakemake", "dvc"))
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_changing_one_injection_cell_recomputes_only_its_train_and_evaluate(tmp_path):
    def edit(raw):
        raw["studies"]["poh_injection"]["cells"]["transformer"]["baseline_layers"] = 3

    raw = shipped_params()
    before = build(_write(tmp_path / "a.yaml", raw), RECIPES, only=["poh_injection"])
    edit(raw)
    after = build(_write(tmp_path / "b.yaml", raw), RECIPES, only=["poh_injection"])
    old = {n.fingerprint for n in before.nodes.values()}
    assert sorted(n.label for n in after.nodes.values() if n.fingerprint not in old) == [
        "poh_injection/evaluate/transformer",
        "poh_injection/report/base",
        "poh_injection/train/transformer",
    ]
    assert [n.slug for n in after.nodes.values() if n.stage == "sudoku_data"] == ["base"]  # generated once


def _write(path, raw):
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_report_knows_the_base_cell_of_the_study(tmp_path):
    report = plan_of(tmp_path).node("ska_lm", "report", "base")
    assert report.parts["base"]["minhash_k"] == 64 and report.parts["base"]["precision"] == "fp32"
    assert set(report.parts["base"]) == set(next(iter(report.parts["cells"].values()))["params"])
