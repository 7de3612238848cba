"""`ablate` acts on the project it is run in (params.yaml found from the working directory
upward), not on the checkout it was installed from."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import project
from pipeline.codehash import ROOT

TOY = ROOT / "tests" / "toy_project"


def toy_clone(path: Path, exponents: str, own_pipeline: bool = True) -> Path:
    """The toy project at ``path``; with ``own_pipeline`` also this repository's ablate.py and
    pipeline/ (a clone), without them only params.yaml and stages/ (a project using the installed ablate)."""
    path.mkdir(parents=True)
    shutil.copytree(TOY / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    text = (TOY / "params.yaml").read_text()
    assert "exponent: [2, 3]" in text
    (path / "params.yaml").write_text(text.replace("exponent: [2, 3]", f"exponent: {exponents}"))
    if own_pipeline:
        shutil.copy2(ROOT / "ablate.py", path / "ablate.py")
        shutil.copytree(ROOT / "pipeline", path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    return path


def installed_ablate(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """What the `ablate` console script does: import ablate from the checkout it was installed from."""
    code = f"import sys; sys.path.insert(0, {str(installed)!r}); import ablate; sys.exit(ablate.main())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_") and k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def power_nodes(proc: subprocess.CompletedProcess) -> set[str]:
    assert proc.returncode == 0, proc.stderr
    return {r["node"] for r in json.loads(proc.stdout) if r["node"].startswith("toy/power/")}


@pytest.mark.parametrize("own_pipeline", [True, False], ids=["clone", "stages-only project"])
def test_status_in_a_second_project_reports_the_second_projects_plan(tmp_path, own_pipeline):
    first = toy_clone(tmp_path / "first", "[2, 3]")
    second = toy_clone(tmp_path / "second", "[2, 3, 4]", own_pipeline)
    (second / "sub" / "dir").mkdir(parents=True)
    nodes = power_nodes(installed_ablate(first, "status", "--json", cwd=second / "sub" / "dir"))
    assert "toy/power/seed=1,exponent=4" in nodes and len(nodes) == 7  # 2 seeds × 3 exponents + the named cell
    assert len(power_nodes(installed_ablate(first, "status", "--json", cwd=first))) == 5


def test_stages_only_project_imports_its_own_stages(tmp_path):
    """The installed ablate plans the project's stages/, not its own checkout's: a stage
    added to the project's recipe shows up in its status."""
    first = toy_clone(tmp_path / "first", "[2, 3]")
    second = toy_clone(tmp_path / "second", "[2, 3]", own_pipeline=False)
    init = second / "stages" / "__init__.py"
    init.write_text(init.read_text().replace('"stages.power", ', '"stages.power", "stages.cube", '))
    spec = (second / "stages" / "power.py").read_text().replace('name="power"', 'name="cube"')
    (second / "stages" / "cube.py").write_text(spec)
    out = installed_ablate(first, "status", "--json", cwd=second)
    assert out.returncode == 0, out.stderr
    assert any(r["node"].startswith("toy/cube/") for r in json.loads(out.stdout))


def test_outside_any_project_the_error_names_the_directory(tmp_path):
    first = toy_clone(tmp_path / "first", "[2, 3]")
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    out = installed_ablate(first, "status", cwd=elsewhere)
    assert out.returncode == 2
    assert f"not inside an ablate project: no params.yaml in {elsewhere.resolve()} or any parent" in out.stderr


def test_ablate_project_overrides_the_search(tmp_path, monkeypatch):
    target = toy_clone(tmp_path / "target", "[2]", own_pipeline=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_PROJECT", str(target))
    assert project.root() == target.resolve()
    monkeypatch.setenv("ABLATE_PROJECT", str(tmp_path))
    with pytest.raises(project.NotAProject, match=f"ABLATE_PROJECT={tmp_path} is not an ablate project"):
        project.root()
