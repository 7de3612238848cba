"""`ablate report`: the cross-study page (artifacts/reports/index.md) a researcher reads after a
sweep, on a toy project built node by node with the real runner: counts by state, job time and
time left from the recorded wall times, the headline table's top rows, links that resolve, and
the stale/partial marking naming the missing cells; plus its answers to an empty project and a
misspelt study."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.codehash import ROOT
from pipeline.report_index import duration

# The toy report stage, extended to write what the real report stages write (tables as .md,
# .csv and .tex, and a plot), so the page has a headline and links to show.
REPORT = '''"""report: the cells ranked by total (summary), a row per cell by name (table), a plot."""

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=("title",), needs=("power",), gather=True)


def run(ctx: Context) -> dict:
    totals = {c: next(u for u in ctx.inputs("power") if c in u.cells).metrics()["total"] for c in ctx.cells}
    for stem, order in (("summary", sorted(totals, key=lambda c: -totals[c])), ("table", sorted(totals))):
        rows = [f"| {c} | {totals[c]} |" for c in order]
        (ctx.out / f"{stem}.md").write_text("\\n".join(["| cell | total |", "|------|-------|", *rows]) + "\\n")
        (ctx.out / f"{stem}.csv").write_text("cell,total\\n" + "".join(f"{c},{totals[c]}\\n" for c in order))
    (ctx.out / "table.tex").write_text("\\\\begin{tabular}{lr}\\\\end{tabular}\\n")
    (ctx.out / "totals.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n")
    return {"cells": len(totals)}
'''


def toy_project(path: Path) -> Path:
    """The toy recipe as a project of its own (ablate.py and pipeline/ from this checkout)."""
    toy = ROOT / "tests" / "toy_project"
    for src, dst in ((toy / "stages", "stages"), (ROOT / "pipeline", "pipeline")):
        shutil.copytree(src, path / dst, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(toy / "params.yaml", path / "params.yaml")
    shutil.copy2(ROOT / "ablate.py", path / "ablate.py")
    (path / "stages" / "report.py").write_text(REPORT)
    return path


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in the project, its artifacts and store inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")} | {"PYTHONPATH": str(project)}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def build(project: Path, label: str) -> subprocess.CompletedProcess:
    return run(project, "-m", "stages", *label.split("/"))


def plan_labels(project: Path) -> list[str]:
    return [line.split()[1] for line in run(project, "ablate.py", "plan").stdout.splitlines()[:-1]]


def logged(project: Path) -> list[dict]:
    path = project / "artifacts" / ".logs" / "builds.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def mean_wall(records: list[dict], stage: str) -> float:
    walls = [r["wall_s"] for r in records if r["action"] == "computed" and r["stage"] == stage]
    return sum(walls) / len(walls)


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """Every node built; then two cells added: `broken` (its power stage raises) and `later`
    (n: 8, never built). gen/broken restores from the store (same params as gen/seed=0),
    power/broken fails, later's two nodes are pending, and the report is stale."""
    project = toy_project(tmp_path_factory.mktemp("toy"))
    for label in plan_labels(project):  # plan order: every upstream before its downstream
        assert build(project, label).returncode == 0, label
    params = project / "params.yaml"
    params.write_text(params.read_text() + "      broken: {fail: true}\n      later: {n: 8}\n")
    assert build(project, "toy/gen/broken").returncode == 0
    failed = build(project, "toy/power/broken")
    assert failed.returncode == 1, failed.stderr
    proc = run(project, "ablate.py", "report")
    assert proc.returncode == 0, proc.stderr
    return project, proc.stdout, (project / "artifacts" / "reports" / "index.md").read_text()


def test_summary_line_counts_nodes_by_state_and_sums_the_recorded_job_time(partial):
    """13 nodes: gen ×5 (later pending), power ×6 (broken failed, later pending), the report
    stale. Job time = every computed wall time in builds.jsonl + the failed attempt's."""
    project, stdout, page = partial
    records = logged(project)
    failure = next((project / "artifacts" / ".store" / "failures").glob("*.json"))
    spent = sum(r["wall_s"] for r in records if r["action"] == "computed") + json.loads(failure.read_text())["wall_s"]
    left = mean_wall(records, "gen") + mean_wall(records, "power") + mean_wall(records, "report")  # later ×2, report
    line = f"9/13 nodes done · 1 failed · 2 pending · 1 stale · job time {duration(spent)} · left {duration(left)}"
    assert stdout.splitlines()[0] == line
    assert f"**{line}**" in page.splitlines()
    row = f"| [toy](#toy) | 9/13 | 2 | 1 | 1 | 0 | 0 | {duration(spent)} | {duration(left)} | stale/partial |"
    assert row in page.splitlines()


def test_a_stale_report_is_marked_naming_the_fingerprints_the_missing_cells_and_the_failure(partial):
    project, stdout, page = partial
    held = json.loads((project / "artifacts" / "reports" / "toy" / "meta.json").read_text())["fingerprint"]
    wanted = next(ln.split()[0] for ln in run(project, "ablate.py", "plan").stdout.splitlines() if " toy/report/" in ln)
    note = (
        "tables stale/partial: the report was built from other params, cells or code than the plan's "
        f"(workspace has {held[:12]}, plan wants {wanted}); "
        "2 cell(s) not done: broken (power failed); later (gen pending, power pending)"
    )
    assert f"**{note}**" in page.splitlines()
    assert note in stdout
    assert "- toy/power/broken: failed, exit code 1: RuntimeError: asked to fail" in page.splitlines()


def test_headline_is_the_summary_tables_top_rows_from_the_built_report(partial):
    """The report built before the new cells ranks the five old cells by total; the page shows
    its first three rows, which are the three largest totals among the power nodes."""
    project, _, page = partial
    totals = {}
    for meta in (project / "artifacts" / "toy" / "power").glob("*/meta.json"):
        if meta.parent.name != "broken":
            totals[meta.parent.name] = json.loads(meta.read_text())["metrics"]["total"]
    top = sorted(totals.values(), reverse=True)[:3]
    lines = page.splitlines()
    start = lines.index("Headline: [summary](toy/summary.md) (top 3 of 5 rows)")
    assert lines[start + 2 : start + 4] == ["| cell | total |", "|---|---|"]
    assert [int(row.split("|")[2]) for row in lines[start + 4 : start + 7]] == top
    assert lines[start + 7] == ""


def test_every_table_and_plot_is_linked_and_every_link_resolves(partial):
    project, _, page = partial
    reports = project / "artifacts" / "reports"
    links = re.findall(r"\]\(([^)#]+)\)", page)
    kinds = (".md", ".csv", ".tex", ".png")
    on_disk = sorted(f"toy/{p.name}" for p in (reports / "toy").iterdir() if p.suffix in kinds)
    assert sorted(set(links)) == on_disk
    assert all((reports / link).is_file() for link in links)
    assert [p.name for p in reports.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_time_left_skips_nodes_in_the_store_and_is_a_lower_bound_while_a_stage_has_no_timing(tmp_path):
    """gen/seed=0 and gen/seed=1 built, then seed=1's workspace removed (it restores from the
    store, no compute): of gen only cube_big is left, at gen's mean; power and report nodes
    have no record anywhere, so their time is unknown and the total is a lower bound."""
    project = toy_project(tmp_path)
    for label in ("toy/gen/seed=0", "toy/gen/seed=1"):
        assert build(project, label).returncode == 0
    shutil.rmtree(project / "artifacts" / "toy" / "gen" / "seed=1")
    proc = run(project, "ablate.py", "report", "toy")
    assert proc.returncode == 0, proc.stderr
    gen = mean_wall(logged(project), "gen")
    left = f"left ≥ {duration(gen)} (+ 6 node(s) of power, report: no timing recorded yet)"
    assert (
        proc.stdout.splitlines()[0] == f"1/9 nodes done · 0 failed · 8 pending · job time {duration(2 * gen)} · {left}"
    )
    assert "no report yet: the report is not built; 5 cell(s) not done" in proc.stdout


def test_nothing_built_says_how_to_build_and_writes_no_page(tmp_path):
    project = toy_project(tmp_path)
    proc = run(project, "ablate.py", "report")
    assert proc.returncode == 1 and proc.stderr == ""
    assert "nothing built yet" in proc.stdout and "`snakemake --cores 2`" in proc.stdout and "`make run`" in proc.stdout
    assert not (project / "artifacts" / "reports" / "index.md").exists()


def test_a_misspelt_study_exits_2_suggesting_the_closest(tmp_path):
    project = toy_project(tmp_path)
    proc = run(project, "ablate.py", "report", "tyo")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown study 'tyo' (did you mean 'toy'?)" in proc.stderr


def test_the_headline_parser_reads_the_markdown_the_report_stages_write(tmp_path):
    """studies.report.write_table's .md (polars' markdown) gives back its header and rounded rows."""
    from pipeline.report_index import parse_markdown_table
    from studies.report import write_table

    rows = [{"cell": "a=1,b=2", "loss": 0.123456, "finding": "lower"}, {"cell": "base", "loss": 2.0, "finding": ""}]
    write_table(rows, tmp_path / "summary", sort_by="loss", first=("cell",))
    header, body = parse_markdown_table((tmp_path / "summary.md").read_text())
    assert header == ["cell", "loss", "finding"]
    assert body == [["a=1,b=2", "0.1235", "lower"], ["base", "2.0", ""]]
