"""A throwaway project (the repo's pipeline, Snakefile and workflow with the toy recipe)
on which the real snakemake and dvc binaries run."""

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.codehash import ROOT

BIN = Path(sys.executable).parent
TOY = Path(__file__).resolve().parent.parent / "toy_project"


class Project:
    def __init__(self, path: Path, store: Path | None = None):
        self.path = path
        self.env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": str(path),
            "ABLATE_STORE": str(store or path / "artifacts" / ".store"),
        }
        self.env.pop("ABLATE_ARTIFACTS", None)

    def run(self, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def snakemake(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("snakemake", "--cores", "2", *args, check=check)

    def dvc_repro(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("dvc", "repro", "--quiet", check=check)

    def builds(self) -> list[dict]:
        log = self.path / "artifacts" / ".logs" / "builds.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def computed(self, since: int = 0) -> collections.Counter:
        """How many nodes of each stage were computed, in builds after the first ``since``."""
        return collections.Counter(b["stage"] for b in self.builds()[since:] if b["action"] == "computed")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.path / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    def status(self) -> dict[str, str]:
        out = self.run(sys.executable, "-m", "ablate", "status", "--json").stdout
        return {r["node"]: r["state"] for r in json.loads(out)}

    def commit(self, message: str = "snapshot") -> None:
        self.run("git", "add", "-A")
        self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message)


def make_project(path: Path, store: Path | None = None) -> Project:
    """A fresh project with the repository's own committed git, DVC and dvcignore settings."""
    path.mkdir(parents=True)
    for name in ("Snakefile", "ablate.py", ".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / name, path / name)
    for name in ("workflow", "profiles", "pipeline"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TOY / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(TOY / "params.yaml", path / "params.yaml")
    project = Project(path, store)
    project.run("git", "init", "-q")
    project.run("dvc", "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", path / ".dvc" / "config")  # the committed cache link type
    project.run(sys.executable, "-m", "ablate", "dvc-yaml", "--write")
    return project


def clone(origin: Project, path: Path, store: Path | None = None) -> Project:
    """``git clone`` of ``origin`` after committing it (artifacts/ stays out: it is git-ignored)."""
    origin.commit()
    origin.run("git", "clone", "-q", str(origin.path), str(path))
    return Project(path, store)


@pytest.fixture
def project(tmp_path) -> Project:
    return make_project(tmp_path / "project")
