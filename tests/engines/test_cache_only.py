"""Cache-only builds (reproducing tables from a shared store without retraining), per-node
records (a job does not re-plan the study), and a store that cannot be reached."""

import json
import sys

import pytest
from conftest import make_project

pytestmark = pytest.mark.engines
ALL_NODES = 9  # gen 3 + power 5 + report 1


def fingerprints(project) -> dict[str, str]:
    out = project.run(sys.executable, "-m", "ablate", "status", "--json").stdout
    return {r["node"]: r["fingerprint"] for r in json.loads(out)}


def stored(store) -> list:
    return [p for p in (store / "objects").glob("*/*")] if (store / "objects").exists() else []


def test_cache_only_node_command_names_node_and_fingerprint_and_publishes_nothing(project):
    fp = fingerprints(project)["toy/gen/seed=0"]
    proc = project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0", "--cache-only", check=False)
    assert proc.returncode == 4
    assert f"toy/gen/seed=0: error: the store ({project.env['ABLATE_STORE']}) lacks fingerprint {fp}" in proc.stderr
    assert stored(project.path / "artifacts" / ".store") == []
    assert not (project.path / "artifacts/toy/gen/seed=0").exists()
    assert [b["action"] for b in project.builds()] == ["missing"]


def test_cache_only_snakemake_computes_nothing_and_its_log_names_what_is_missing(project):
    project.env["ABLATE_CACHE_ONLY"] = "1"
    proc = project.snakemake(check=False)
    assert proc.returncode != 0
    assert project.computed() == {} and stored(project.path / "artifacts" / ".store") == []
    listed = [line for line in proc.stderr.splitlines() if line.startswith("[ablate] cache-only: the store lacks")]
    assert len(listed) == ALL_NODES  # named up front, at parse time, before any job runs
    logs = "".join(p.read_text() for p in (project.path / "artifacts/.logs/toy/gen").glob("*.log"))
    fps = fingerprints(project)
    missing = [b["node"] for b in project.builds() if b["action"] == "missing"]
    assert missing and all(f"{node}: error: the store" in logs and fps[node] in logs for node in missing)


def test_cache_only_reproduces_every_node_from_a_shared_store(tmp_path):
    store = tmp_path / "store"
    first = make_project(tmp_path / "first", store)
    second = make_project(tmp_path / "second", store)
    preflight = second.run(sys.executable, "-m", "ablate", "status", "--cache-only", check=False)
    assert preflight.returncode == 1
    assert preflight.stdout.count("needs compute  toy/") == ALL_NODES
    fp = fingerprints(second)["toy/power/seed=1,exponent=3"]
    assert f"needs compute  toy/power/seed=1,exponent=3  fingerprint {fp}  (pending)" in preflight.stdout
    first.snakemake()
    assert sum(first.computed().values()) == ALL_NODES
    assert second.run(sys.executable, "-m", "ablate", "check", "--cache-only").returncode == 0
    second.env["ABLATE_CACHE_ONLY"] = "1"
    second.snakemake()
    assert second.computed() == {} and {b["action"] for b in second.builds()} == {"store_hit"}
    assert set(second.status().values()) == {"done"}
    assert not any(b["planned"] for b in first.builds() + second.builds()), "a snakemake job re-planned the study"


def test_a_job_trusts_only_a_current_record(project):
    """Records written by the engine run spare the job a plan; after a params or code edit
    the record is stale, the job plans, and builds the new fingerprint, never the recorded one."""
    project.run(sys.executable, "-m", "ablate", "fingerprints")
    old = fingerprints(project)["toy/gen/seed=0"]
    project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0")
    assert [(b["action"], b["planned"], b["fingerprint"]) for b in project.builds()] == [("computed", False, old)]
    project.edit("params.yaml", "n: 5", "n: 6")
    new = fingerprints(project)["toy/gen/seed=0"]
    assert new != old
    project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0")
    assert (project.builds()[-1]["action"], project.builds()[-1]["planned"]) == ("computed", True)
    assert project.builds()[-1]["fingerprint"] == new
    project.edit("stages/helpers.py", "def slow_write(", "# a comment\ndef slow_write(")
    project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0")
    assert (project.builds()[-1]["action"], project.builds()[-1]["planned"]) == ("up_to_date", True)
    project.run(sys.executable, "-m", "ablate", "fingerprints")
    project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0")
    assert (project.builds()[-1]["action"], project.builds()[-1]["planned"]) == ("up_to_date", False)


def test_an_unreachable_store_is_named_and_nothing_is_published(project, tmp_path):
    missing = tmp_path / "not-mounted" / "store"
    project.env["ABLATE_STORE"] = str(missing)
    proc = project.run(sys.executable, "-m", "stages", "toy", "gen", "seed=0", check=False)
    assert proc.returncode == 2
    assert f"ABLATE_STORE={missing}: its parent directory {missing.parent} does not exist" in proc.stderr
    assert not missing.parent.exists() and not (project.path / "artifacts/toy").exists()
