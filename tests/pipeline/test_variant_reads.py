"""A variant's params only where they apply: an SDPA cell of ska_lm neither hashes SKA's keys
nor has a bank (StageSpec.applies / needs_on), planned from the shipped params.yaml."""

import json

import pytest
import yaml

from pipeline import status
from pipeline.codehash import ROOT
from pipeline.plan import build
from pipeline.spec import StageSpec
from pipeline.store import Store
from stages import RECIPES
from stages.ska.lm_train import SKA_KEYS


def plan_of(tmp_path, name, edit=None):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if edit:
        edit(raw["studies"]["ska_lm"])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return build(path, RECIPES, only=["ska_lm"])


def set_gamma(study):
    study["params"]["gamma"] = 0.2  # base 0.3: every cell but the gamma_wide ones


def cells_of(plan, variant):
    study = plan.studies["ska_lm"]
    return [c.name for c in study.cells if c.params["attention"] == variant]


def test_an_ska_only_edit_moves_every_ska_node_downstream_of_it_and_no_sdpa_node(tmp_path):
    before, after = plan_of(tmp_path, "before"), plan_of(tmp_path, "after", set_gamma)
    sdpa, ska = cells_of(before, "sdpa"), cells_of(before, "ska")
    assert sdpa and ska
    for cell in sdpa:
        for stage in ("tokenize", "train", "evaluate"):
            was, now = before.by_cell["ska_lm", cell, stage], after.by_cell["ska_lm", cell, stage]
            assert (now.label, now.fingerprint) == (was.label, was.fingerprint)
    moved = [c for c in ska if not c.startswith("gamma_wide")]  # those set gamma themselves
    for cell in moved:
        for stage in ("train", "evaluate"):
            assert after.by_cell["ska_lm", cell, stage].fingerprint != before.by_cell["ska_lm", cell, stage].fingerprint
        assert after.by_cell["ska_lm", cell, "banks"].fingerprint == before.by_cell["ska_lm", cell, "banks"].fingerprint


def test_sdpa_nodes_hash_no_ska_key_and_ska_nodes_hash_them_all(tmp_path):
    plan = plan_of(tmp_path, "params")
    sdpa = plan.node("ska_lm", "train", "sdpa")
    assert set(SKA_KEYS) & set(sdpa.params) == set()
    assert "window" not in sdpa.params  # no conv either: mixer 'auto' leaves SDPA a plain transformer
    assert "window" in plan.node("ska_lm", "train", "sdpa_conv").params  # the conv's width
    assert set(SKA_KEYS) | {"window"} <= set(plan.node("ska_lm", "train", "ska").params)
    assert sdpa.parts["params"] == sdpa.params  # what the fingerprint and meta.json carry


def test_sdpa_cells_have_no_bank_node_nor_edge(tmp_path):
    plan = plan_of(tmp_path, "params")
    for cell in cells_of(plan, "sdpa"):
        assert ("ska_lm", cell, "banks") not in plan.by_cell
        assert ("ska_lm", "banks", cell) not in plan.nodes
        for stage in ("train", "evaluate"):
            assert [s for s, _ in plan.by_cell["ska_lm", cell, stage].upstream if s == "banks"] == []
        assert ("ska_lm", "banks", cell) in plan.excluded  # dvc.yaml's foreach asks for it: a marker, no compute
    for cell in cells_of(plan, "ska"):
        assert "banks" in dict(plan.by_cell["ska_lm", cell, "train"].upstream)
    banks = {n.slug for n in plan.nodes.values() if n.stage == "banks"}
    assert banks & set(cells_of(plan, "sdpa")) == set()
    report = plan.node("ska_lm", "report", "base")
    assert {s for s, u in report.upstream if u in cells_of(plan, "sdpa")} == {"train", "evaluate"}


def test_why_finds_an_sdpa_train_node_up_to_date_after_a_gamma_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ABLATE_STORE", str(tmp_path / "store"))
    before = plan_of(tmp_path, "before")
    for cell in ("sdpa", "ska"):  # their workspaces hold the artifacts of gamma 0.3
        node = before.by_cell["ska_lm", cell, "train"]
        node.workspace().mkdir(parents=True)
        (node.workspace() / "meta.json").write_text(json.dumps({"fingerprint": node.fingerprint, "parts": node.parts}))
    after = plan_of(tmp_path, "after", set_gamma)
    assert status.why(after, after.node("ska_lm", "train", "sdpa"), Store()) == ["ska_lm/train/sdpa: up to date"]
    assert status.why(after, after.node("ska_lm", "train", "ska"), Store())[1:] == ["params.gamma: 0.3 → 0.2"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"applies": {"gamma": lambda attention: True}}, r"applies names keys it does not read: \['gamma'\]"),
        ({"applies": {"tau": lambda gamma: gamma > 0}}, r"applies\['tau'\] names keys it does not read: \['gamma'\]"),
        (
            {"reads": ("attention", "tau", "gamma"), "applies": {"tau": lambda gamma: 1, "gamma": lambda attention: 1}},
            r"conditional too: \{'tau': \['gamma'\]\}",
        ),
        ({"needs_on": {"banks": lambda attention: True}}, r"needs_on names stages it does not need: \['banks'\]"),
    ],
)
def test_a_variant_declaration_naming_what_the_stage_does_not_read_or_need_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StageSpec(**{"name": "train", "reads": ("attention", "tau"), **kwargs})


def test_the_report_sees_none_for_a_key_the_cells_variant_does_not_use(tmp_path):
    table = plan_of(tmp_path, "params").node("ska_lm", "report", "base").parts["cells"]
    assert {k: table["sdpa"]["params"][k] for k in ("attention", "gamma", "minhash_k", "window")} == {
        "attention": "sdpa",
        "gamma": None,
        "minhash_k": None,
        "window": None,
    }
    assert table["sdpa_conv"]["params"]["window"] == 32  # the conv's width: used
    assert table["ska"]["params"]["gamma"] == 0.3
