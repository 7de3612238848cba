"""The views DVC and Snakemake users reach for, on the toy project with the real binaries:
``dvc metrics show``, ``dvc plots show``, ``dvc exp run -S``, ``snakemake --report`` and the
job names ``snakemake -n`` prints.

The toy report writes table.csv (a row per cell: "cell", total) and totals.png; its module
declares both in VIEWS, so dvc.yaml lists them (pipeline.views); Snakemake's report shows the
CSV tables and PNG plots its ``toy_views`` job links into artifacts/.views/toy."""

import base64
import csv
import json
import re

import pytest

from pipeline import views
from pipeline.plan import build
from stages import RECIPES

pytestmark = pytest.mark.engines
REPORT = "artifacts/reports/toy"


def power_totals(project) -> dict[str, int]:
    """Each cell's total, read from the power nodes' own meta.json (not from the report)."""
    out = {}
    for meta in (project.path / "artifacts/toy/power").glob("*/meta.json"):
        out[meta.parent.name] = json.loads(meta.read_text())["metrics"]["total"]
    return out


def output(proc) -> str:
    return proc.stdout + proc.stderr  # Snakemake logs to both


def test_dvc_metrics_show_lists_the_reports_headline_numbers(project):
    project.dvc_repro()
    shown = json.loads(project.run("dvc", "metrics", "show", "--json").stdout)
    (workspace,) = shown.values()  # DVC 3 keys the workspace "" here
    metrics = workspace["data"][f"{REPORT}/metrics.json"]["data"]
    totals = power_totals(project)
    assert metrics == {"cells": 5, "max_total": max(totals.values())}
    assert len(totals) == 5


def test_dvc_plots_show_draws_the_report_image_and_its_table(project):
    project.dvc_repro()
    project.run("dvc", "plots", "show", "-o", "plots_html")
    html = (project.path / "plots_html" / "index.html").read_text()
    image = "static/workspace_artifacts_reports_toy_totals.png"
    assert image in html and (project.path / "plots_html" / image).read_bytes().startswith(b"\x89PNG")
    data = json.loads(project.run("dvc", "plots", "show", "--json").stdout)["data"]["toy: table.csv"][0]
    bars = {d["cell"]: int(d["total"]) for d in data["content"]["data"]["values"]}
    assert bars == power_totals(project)  # one bar per cell, its total: the CSV's columns, quoted names intact


def test_dvc_exp_run_sets_a_study_param_and_rebuilds_only_what_reads_it(project):
    project.dvc_repro()
    project.commit()  # experiments start from a commit
    n = len(project.builds())
    project.run("dvc", "exp", "run", "-S", "studies.toy.params.title=renamed")
    assert project.computed(n) == {"report": 1}  # title is read by the report alone
    assert (project.path / REPORT / "table.txt").read_text().splitlines()[0] == "renamed"
    rows = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    titles = [r["data"]["params"]["params.yaml"]["data"]["studies"]["toy"]["params"]["title"] for r in rows]
    assert titles[:2] == ["renamed", "toy"]  # the workspace (the experiment applied), then the commit
    assert rows[0]["data"]["metrics"][f"{REPORT}/metrics.json"]["data"]["cells"] == 5


def test_snakemake_report_holds_each_studys_table_and_plot(project):
    project.snakemake()
    project.snakemake("--report", "report.html")
    html = (project.path / "report.html").read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    table, plot = results["artifacts/.views/toy/table.csv"], results["artifacts/.views/toy/totals.png"]
    assert (table["mime_type"], plot["mime_type"]) == ("text/csv", "image/png")
    embedded = base64.b64decode(table["data_uri"].split("base64,", 1)[1]).decode()
    assert embedded == (project.path / REPORT / "table.csv").read_text()
    assert {r["cell"]: int(r["total"]) for r in csv.DictReader(embedded.splitlines())} == power_totals(project)
    assert base64.b64decode(plot["data_uri"].split("base64,", 1)[1]).startswith(b"\x89PNG")
    assert re.search(r'var categories = \{"toy"', html), "the study is not the report's category"


def test_snakemake_names_jobs_after_study_and_stage_and_the_report_lists_no_inputs(project):
    dry = output(project.snakemake("-n"))
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.split("Job stats:")[1], flags=re.M))
    assert stats == {"toy_gen": "3", "toy_power": "5", "toy_report": "1", "toy_views": "1", "all": "1", "total": "11"}
    built = output(project.snakemake()) + output(project.snakemake("--forcerun", "toy_report"))
    report_jobs = [block for block in built.split("\n[") if "toy: report of 5 cells" in block]
    assert len(report_jobs) == 2
    for block in report_jobs:  # the message instead of the rule's input list
        assert "input:" not in block and "power/seed=0,exponent=2/meta.json" not in block.split("Reason:")[0]


def test_dvc_views_name_only_keys_the_report_reads_for_every_study():
    """Every real study's report gets a metrics file; plot names interpolate params.yaml keys."""
    from pipeline.codehash import ROOT

    plan = build(ROOT / "params.yaml", RECIPES)
    sections = views.dvc_sections(plan)
    assert sections["metrics"] == [f"artifacts/reports/{s}/metrics.json" for s in plan.studies]
    names = [p if isinstance(p, str) else next(iter(p)) for p in sections["plots"]]
    assert (
        "artifacts/reports/ska_lm/${studies.ska_lm.params.report_metric}_vs_${studies.ska_lm.params.report_x}.png"
        in names
    )
    with pytest.raises(ValueError, match=r"\{lr\} is not a key the report reads"):
        views._dvc_name("{lr}.png", "ska_lm", ("report_metric",))
