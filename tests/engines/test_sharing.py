"""Sharing, as the README promises it, with the real snakemake and dvc: clones on one store,
``dvc push``/``dvc pull`` into a clone with its own store, and one copy on disk per artifact
(store, DVC cache and workspace are hard links of one file: .dvc/config sets cache.type).

The one-copy figures assume a filesystem without reflinks (ext4, overlayfs): where DVC can
reflink it does, and ``du`` then counts the shared extents twice.
"""

import collections
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clone, make_project

pytestmark = pytest.mark.engines
ALL = {"gen": 3, "power": 5, "report": 1}
NODES = sum(ALL.values())


def workspace_files(project) -> dict[str, Path]:
    """Every file the engines' outputs hold (node and report workspaces), by relative path."""
    art = project.path / "artifacts"
    files = [*art.glob("toy/*/*/*"), *art.glob("reports/toy/*")]
    return {str(f.relative_to(art)): f for f in files}


def links(name: str) -> int:
    """Hard links of one artifact: store, workspace and DVC cache, plus, for a report's tables and
    plots, the `<study>_views` job's link for `snakemake --report` (artifacts/.views): one copy on disk."""
    return 4 if name.startswith("reports/") and name.endswith((".csv", ".png")) else 3


def store_files(store: Path) -> list[Path]:
    return [f for f in (store / "objects").rglob("*") if f.is_file()]


def disk_bytes(project, *paths: str) -> int:
    """Bytes on disk under ``paths``, from one ``du`` so a file hard-linked in several counts once."""
    out = subprocess.run(["du", "-s", "-c", "-B1", *paths], cwd=project.path, capture_output=True, text=True).stdout
    return int(out.splitlines()[-1].split()[0])


def dvc_objects(project) -> list[Path]:
    return [f for f in (project.path / ".dvc/cache/files/md5").rglob("*") if f.is_file()]


def test_a_clone_on_the_same_store_computes_nothing_and_links_the_first_clones_artifacts(tmp_path):
    store = tmp_path / "store"
    first = make_project(tmp_path / "first", store)
    first.snakemake()
    assert first.computed() == ALL
    second = clone(first, tmp_path / "second", store)
    second.snakemake()
    assert second.computed() == {} and collections.Counter(b["action"] for b in second.builds()) == {"store_hit": NODES}
    assert set(second.status().values()) == {"done"}
    mine, theirs = workspace_files(second), workspace_files(first)
    assert mine.keys() == theirs.keys() and sum(name.endswith("meta.json") for name in mine) == NODES
    assert all(mine[name].samefile(theirs[name]) for name in mine), "a clone holds its own copy of a shared artifact"


def test_dvc_pull_into_a_clone_with_its_own_store_adopts_every_node_without_compute(tmp_path):
    first = make_project(tmp_path / "first")
    first.run("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    first.dvc_repro()
    assert first.computed() == ALL
    first.run("dvc", "push", "--quiet")
    second = clone(first, tmp_path / "second")  # the remote comes with .dvc/config; the store is second's own
    store = second.path / "artifacts" / ".store"
    second.run("dvc", "pull", "--quiet")
    assert not store.exists() and workspace_files(second).keys() == workspace_files(first).keys()
    second.snakemake()  # its parse adopts every pulled node; the jobs Snakemake still runs restore them
    actions = collections.Counter(b["action"] for b in second.builds())
    assert second.computed() == {} and actions["adopted"] == NODES and set(actions) <= {"adopted", "store_hit"}
    n = len(second.builds())
    second.dvc_repro()
    assert second.computed(n) == {}
    assert set(second.status().values()) == {"done"}
    assert second.run(sys.executable, "-m", "ablate", "verify").stdout == f"{NODES} entries sound, 0 corrupt\n"
    # adopted by hard link: the pulled file, its DVC cache object and the store entry are one file
    payload = {name: f for name, f in workspace_files(second).items() if not name.endswith("meta.json")}
    assert payload and all(f.stat().st_nlink == links(name) for name, f in payload.items())
    assert {f.stat().st_ino for f in payload.values()} <= {f.stat().st_ino for f in store_files(store)}


def test_store_dvc_cache_and_workspace_hold_one_copy_of_each_artifact(project):
    project.edit("params.yaml", "n: 5", "n: 200000")  # megabytes of payload, so DVC's own small files do not count
    project.snakemake()
    project.dvc_repro()
    store = disk_bytes(project, "artifacts/.store")
    everything = disk_bytes(project, "artifacts", ".dvc/cache")  # the store is artifacts/.store
    print(f"store {store} B; store + workspace + DVC cache {everything} B ({everything / store:.2f}x)")
    assert store > 5_000_000 and everything < 1.3 * store
    assert all(f.stat().st_nlink == links(name) for name, f in workspace_files(project).items())


def test_rebuilding_over_a_dvc_linked_workspace_leaves_the_dvc_cache_intact(project):
    """Outputs are never edited in place: a rebuild unlinks the old files and links new ones,
    so the DVC cache objects the old files were linked to keep their content."""
    project.dvc_repro()
    project.commit("first build")
    values = project.path / "artifacts/toy/gen/seed=0/values.json"
    old = values.read_bytes()
    md5 = hashlib.md5(old).hexdigest()
    old_object = project.path / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    assert values.samefile(old_object)
    project.edit("params.yaml", "n: 5", "n: 6")
    n = len(project.builds())
    project.dvc_repro()  # DVC removes the linked outputs; the runner computes and links new ones
    assert project.computed(n) == {"gen": 2, "power": 4, "report": 1}
    assert values.read_bytes() != old and old_object.read_bytes() == old
    for f in dvc_objects(project):  # an object's name is the md5 of its content
        assert f.parent.name + f.name.removesuffix(".dir") == hashlib.md5(f.read_bytes()).hexdigest(), f
    assert project.run(sys.executable, "-m", "ablate", "verify").stdout.endswith(" entries sound, 0 corrupt\n")
    project.run("git", "checkout", "--", "params.yaml", "dvc.lock")
    project.run("dvc", "checkout", "--quiet")  # back to the first build, from the DVC cache
    assert values.read_bytes() == old
    assert set(project.status().values()) == {"done"}
    n = len(project.builds())
    project.dvc_repro()
    assert len(project.builds()) == n, "dvc repro asked for a build after checking out a committed state"
