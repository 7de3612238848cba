"""Failures as results, with the real engines: one cell runs out of memory and one fails, every
other cell is built, the study's report shows both as rows with their states (and says in its
first line that it is partial), the run still ends non-zero naming them, and once the failure
is gone (transient: a switch file, no param or code change) a plain rerun retries exactly the
two failed nodes and rebuilds the report, which no longer names a failure.
"""

import sys

import pytest

pytestmark = pytest.mark.engines
SWITCH = "fail_switch"  # present: the cells with `fail` set fail; removed: the failure was transient
FAILING = {"toy/power/cube_big": "oom", "toy/power/broken": "failed"}


@pytest.fixture
def failing(project):
    project.edit(
        "stages/power.py",
        '    if ctx.params["fail"]:\n        raise RuntimeError("asked to fail")',
        "    from pathlib import Path\n\n"
        f'    if ctx.params["fail"] and Path("{SWITCH}").exists():\n'
        '        if ctx.params["exponent"] == 3:  # cube_big\n'
        '            raise MemoryError("asked to run out of memory")\n'
        '        raise RuntimeError("asked to fail")',
    )
    project.edit(
        "params.yaml",
        "cube_big: {n: 7, exponent: 3}",
        "cube_big: {n: 7, exponent: 3, fail: true}\n      broken: {fail: true}",
    )
    project.run(sys.executable, "-m", "ablate", "dvc-yaml", "--write")  # `fail` became a varying key
    (project.path / SWITCH).write_text("")
    return project


def report_table(project) -> list[str]:
    return (project.path / "artifacts/reports/toy/table.md").read_text().splitlines()


def assert_failures_shown_as_rows(project, run) -> None:
    assert run.returncode != 0, "a run with failed cells ended as a success"
    assert "toy/power/broken: failed (exit 1: RuntimeError: asked to fail)" in run.stdout + run.stderr
    states = project.status()
    assert {n: s for n, s in states.items() if n in FAILING} == FAILING
    others = {n: s for n, s in states.items() if n not in FAILING and n != "toy/report/base"}
    assert set(others.values()) == {"done"}, f"cells besides the failed ones were not built: {others}"
    assert states["toy/report/base"] == "pending", "a report without two cells counts as current"
    table = report_table(project)
    assert table[0].startswith("PARTIAL build ") and "4 of 6 cells" in table[0]
    assert "cube_big (OOM (peak " in table[0] and "broken (failed (exit 1: RuntimeError: asked to fail))" in table[0]
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in table if line.startswith("| ")}
    assert rows["cube_big"].startswith("OOM (peak ") and rows["cube_big"].endswith(" MB)")
    assert rows["broken"] == "failed (exit 1: RuntimeError: asked to fail)"
    assert [c for c, s in rows.items() if s == "done"] == [
        "seed=0,exponent=2",
        "seed=0,exponent=3",
        "seed=1,exponent=2",
        "seed=1,exponent=3",
    ]
    listing = project.run(sys.executable, "-m", "ablate", "status").stdout
    assert "oom     toy/power/cube_big  exit code 3: MemoryError: asked to run out of memory" in listing
    assert "failed  toy/power/broken  exit code 1: RuntimeError: asked to fail" in listing


def assert_rerun_rebuilt_them(project, since: int) -> None:
    assert project.computed(since) == {"power": 2, "report": 1}, "the rerun did not retry exactly the failed cells"
    assert set(project.status().values()) == {"done"}
    table = report_table(project)
    assert table[0].startswith("Build ") and table[0].endswith("all 6 cells")
    assert not any("failed" in line or "OOM" in line for line in table)


def test_snakemake_keep_going_reports_failed_and_oom_cells_as_rows_and_a_plain_rerun_retries_them(failing):
    run = failing.snakemake("--keep-going", check=False)
    assert_failures_shown_as_rows(failing, run)
    assert "1 node(s) failed" not in run.stderr and "2 node(s) failed" in run.stderr
    again = failing.snakemake(check=False)  # still failing: retried, not taken as built
    assert again.returncode != 0 and failing.computed(len(failing.builds())) == {}
    assert sum(b["action"] == "oom" for b in failing.builds()) == 2, "the second run did not retry the OOM cell"
    n = len(failing.builds())
    (failing.path / SWITCH).unlink()
    failing.snakemake()
    assert_rerun_rebuilt_them(failing, n)


def test_dvc_repro_keep_going_reports_failed_and_oom_cells_as_rows_and_a_plain_rerun_retries_them(failing):
    run = failing.run("dvc", "repro", "--keep-going", check=False)
    assert_failures_shown_as_rows(failing, run)
    again = failing.run("dvc", "repro", check=False)  # still failing: retried, not taken as built
    assert again.returncode != 0
    assert sum(b["action"] == "oom" for b in failing.builds()) == 2, "the second run did not retry the OOM cell"
    n = len(failing.builds())
    (failing.path / SWITCH).unlink()
    failing.dvc_repro()
    assert_rerun_rebuilt_them(failing, n)


def test_a_report_that_cannot_be_rebuilt_says_first_that_its_tables_are_stale(project):
    project.edit(
        "stages/report.py",
        "    lines, rows = [",
        '    assert ctx.params["title"] != "boom", "asked to fail"\n    lines, rows = [',
    )
    project.snakemake()
    built = report_table(project)[0]
    assert built.startswith("Build ") and built.endswith("all 5 cells")
    project.edit("params.yaml", "title: toy", "title: boom")
    run = project.snakemake(check=False)
    assert run.returncode != 0 and "toy/report/base: failed (exit 1: AssertionError: asked to fail)" in run.stderr
    table = report_table(project)
    assert table[0].startswith("STALE: the report of fingerprint ") and "AssertionError: asked to fail" in table[0]
    assert table[2] == built, "the stale tables no longer name the build they are from"
    assert project.status()["toy/report/base"] == "failed"
    project.edit("params.yaml", "title: boom", "title: fixed")
    project.snakemake()
    assert report_table(project)[0].startswith("Build ") and not any("STALE" in ln for ln in report_table(project))


def test_nodes_below_a_failed_node_are_rows_naming_it_and_are_not_computed(project):
    project.edit(
        "stages/gen.py",
        "    rng = random.Random",
        '    assert ctx.params["seed"] != 1, "asked to fail"\n    rng = random.Random',
    )
    run = project.snakemake(check=False)
    assert run.returncode != 0
    assert "2 node(s) failed" not in run.stderr and "1 node(s) failed and 2 were not built" in run.stderr
    assert project.computed() == {"gen": 2, "power": 3}
    assert [b["node"] for b in project.builds() if b["action"] == "partial"] == ["toy/report/base"]
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in report_table(project)[3:]}
    cause = "upstream failed: toy/gen/seed=1 failed (exit 1: AssertionError: asked to fail)"
    assert rows["seed=1,exponent=2"] == rows["seed=1,exponent=3"] == cause
    listing = project.run(sys.executable, "-m", "ablate", "status").stdout
    assert f"pending toy/power/seed=1,exponent=2  not built: {cause}" in listing


def test_a_small_study_and_its_report_are_built_before_a_larger_studys_cells(project):
    params = (project.path / "params.yaml").read_text()
    tiny = "\n  tiny:\n    kind: toy\n" + "\n".join(params.split("\n")[2:10]) + "\n"  # base params, no grid
    (project.path / "params.yaml").write_text(params.rstrip("\n") + tiny)
    project.run(sys.executable, "-m", "ablate", "dvc-yaml", "--write")
    project.run("snakemake", "--cores", "1")
    order = [b["node"] for b in project.builds() if b["action"] == "computed"]
    assert order[:3] == ["tiny/gen/base", "tiny/power/base", "tiny/report/base"], order
    assert order[-1] == "toy/report/base" and all(n.startswith("toy/") for n in order[3:])
