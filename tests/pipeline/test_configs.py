"""Every shipped config in configs/ plans (no compute), covers every study of params.yaml (an
overlay config, naming some studies, once laid over it) and says in its header what hardware and
data it needs; `ablate use` of an overlay replaces only its studies, and switching to a config
and back (`ablate use default`) leaves a clean checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ablate
from pipeline.codehash import ROOT
from pipeline.overlay import overlay, study_blocks
from pipeline.params import ParamsError
from pipeline.plan import build
from stages import RECIPES
from studies.data import sudoku

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def shipped_studies() -> list[str]:
    return list(yaml.safe_load((ROOT / "params.yaml").read_text())["studies"])


def config_studies(config: Path) -> list[str]:
    return list(yaml.safe_load(config.read_text())["studies"])


def as_params(config: Path, where: Path) -> Path:
    """The params file ``ablate use`` makes of ``config``: itself, or for an overlay (a config
    naming only some studies) params.yaml with those studies replaced."""
    if set(config_studies(config)) >= set(shipped_studies()):
        return config
    out = where / f"{config.stem}.params.yaml"
    out.write_text(overlay((ROOT / "params.yaml").read_text(), config.read_text()))
    return out


def write_csv_inputs(config: Path, where: Path) -> list[Path]:
    """Tiny real-format Sudoku-Extreme files at the CSV paths a config names (relative to
    `where`), since planning hashes them; returns the paths written."""
    studies = yaml.safe_load(config.read_text())["studies"]
    paths = sorted(
        {s["params"][k] for s in studies.values() for k in ("sudoku_csv", "sudoku_test_csv") if s["params"].get(k)}
    )
    g = sudoku.generate(2 * len(paths), seed=3, max_givens=40, target_givens=36, progress=False)
    for i, rel in enumerate(paths):
        rows = [
            f"t,{sudoku.to_string(q)},{sudoku.to_string(a)},0"
            for q, a in zip(g["puzzles"][2 * i : 2 * i + 2], g["solutions"][2 * i : 2 * i + 2], strict=True)
        ]
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_text("source,question,answer,rating\n" + "\n".join(rows) + "\n")
    return [where / p for p in paths]


def test_the_paper_config_is_shipped():
    assert "paper" in [p.stem for p in CONFIGS]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_plans_and_covers_every_study_of_params_yaml(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths resolve here, not in the repository
    monkeypatch.setenv("ABLATE_PROJECT", str(ROOT))  # whose code is planned
    inputs = write_csv_inputs(config, tmp_path)
    try:
        plan = build(as_params(config, tmp_path), RECIPES)
    except ParamsError as e:  # bridge_pretrained's models and readers are an optional install
        if "install" not in str(e):
            raise
        pytest.skip(f"{config.name} needs what is not installed here: {e}")
    missing = [s for s in shipped_studies() if s not in plan.studies]
    assert not missing, f"{config.name} lacks {missing}"
    for study in plan.studies.values():
        assert study.cells, study.name
    hashed = {p for n in plan.nodes.values() for p in n.parts["inputs"]}
    assert {str(p.relative_to(tmp_path)) for p in inputs} <= hashed


def test_paper_config_holds_the_plans_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_PROJECT", str(ROOT))
    write_csv_inputs(ROOT / "configs/paper.yaml", tmp_path)
    plan = build(ROOT / "configs/paper.yaml", RECIPES)
    poh = plan.studies["poh_injection"].params
    assert {k: poh[k] for k in ("d_model", "n_heads", "d_ff", "H_layers", "L_layers", "H_cycles", "L_cycles")} == {
        "d_model": 512, "n_heads": 8, "d_ff": 2048, "H_layers": 2, "L_layers": 2, "H_cycles": 2, "L_cycles": 6
    }  # fmt: skip
    assert (poh["batch_size"], poh["lr"], poh["halt_max_steps"], poh["sudoku_source"]) == (768, 3e-4, 4, "csv")
    assert round(poh["warmup_frac"] * poh["steps"]) == 2000
    scaling = {(c.params["size"], c.params["d_model"], c.params["depth"]) for c in plan.studies["poh_scaling"].cells}
    assert scaling == {("large", 768, 6), ("xl", 1024, 8)}
    seeds = {s: {c.params.get("train_seed") for c in st.cells} for s, st in plan.studies.items()}
    for name in ("ska_lm", "ska_vit", "ska_diffusion", "ska_text_diffusion", "poh_injection", "poh_scaling"):
        assert seeds[name] == {0, 1, 2}, name
    bench = {(c.params["backend"], c.params["precision"]) for c in plan.studies["ska_bench"].cells}
    assert {("triton", "bf16"), ("sdpa", "bf16")} <= bench
    assert {c.params["seq_len"] for c in plan.studies["ska_bench"].cells} == {512, 1024, 2048, 4096, 8192}
    assert plan.studies["ska_bench"].params["device"] == "cuda"


def test_use_lays_a_config_naming_some_studies_over_params_keeping_the_others_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    configs = tmp_path / "configs"
    configs.mkdir()
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    partial = {"studies": {"ska_minhash": shipped["studies"]["ska_minhash"]}}
    partial["studies"]["ska_minhash"]["params"]["n_pairs"] = 123
    (configs / "partial.yaml").write_text("# only ska_minhash\n" + yaml.safe_dump(partial))
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    before = target.read_text()
    monkeypatch.setattr(ablate, "CONFIGS", configs)
    assert ablate.main(["--params", str(target), "use", "partial"]) == 0
    after = yaml.safe_load(target.read_text())
    assert list(after["studies"]) == list(shipped["studies"])  # nothing dropped, order kept
    assert after["studies"]["ska_minhash"]["params"]["n_pairs"] == 123
    assert {k: v for k, v in after["studies"].items() if k != "ska_minhash"} == {
        k: v for k, v in shipped["studies"].items() if k != "ska_minhash"
    }
    lines_of = lambda text, study: "".join(  # noqa: E731
        text.splitlines(keepends=True)[slice(*study_blocks(text)[1][study])]
    )
    for study in shipped["studies"]:
        if study != "ska_minhash":  # the others' text, comments included, untouched
            assert lines_of(target.read_text(), study) == lines_of(before, study), study
    assert (tmp_path / "artifacts/params.yaml.bak").read_text() == before


def test_overlay_appends_a_study_the_base_lacks_and_needs_a_studies_line():
    base = "# top\nstudies:\n  a:\n    x: 1\n  # about b\n  b:\n    x: 2\n"
    assert overlay(base, "studies:\n  b:\n    x: 3\n") == "# top\nstudies:\n  a:\n    x: 1\n  # about b\n  b:\n    x: 3\n"
    assert overlay(base, "studies:\n  c:\n    x: 4") == base + "  c:\n    x: 4"
    with pytest.raises(ValueError, match="studies:"):
        overlay("a: 1\n", base)


def test_use_copies_a_config_that_covers_every_study(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    configs = tmp_path / "configs"
    configs.mkdir()
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    target = tmp_path / "params.yaml"
    target.write_text(yaml.safe_dump({"studies": {"ska_minhash": shipped["studies"]["ska_minhash"]}}))
    wider = {"studies": {k: shipped["studies"][k] for k in ("ska_minhash", "ska_parity")}}
    wider["studies"]["ska_minhash"]["params"]["n_pairs"] = 123
    (configs / "wider.yaml").write_text(yaml.safe_dump(wider))
    monkeypatch.setattr(ablate, "CONFIGS", configs)
    assert ablate.main(["--params", str(target), "use", "wider"]) == 0
    assert yaml.safe_load(target.read_text())["studies"]["ska_minhash"]["params"]["n_pairs"] == 123
    assert list(yaml.safe_load((tmp_path / "artifacts/params.yaml.bak").read_text())["studies"]) == ["ska_minhash"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "configs", "params.yaml"]  # nothing beside it
    assert list(yaml.safe_load(target.read_text())["studies"]) == ["ska_minhash", "ska_parity"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_header_names_the_hardware_and_datasets_it_needs(config):
    """The comment block before `studies:` has a line per study saying what it runs on and
    with what data (a reader deciding whether to switch should not have to read 500 lines)."""
    header = config.read_text().split("\nstudies:")[0]
    assert "Hardware and data" in header
    for study in config_studies(config):
        line = next((ln for ln in header.splitlines() if ln.startswith(f"#   {study} ")), None)
        assert line, f"{config.name}: no header line for {study}"
        assert any(w in line for w in ("GPU", "CPU")), line


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]


def git(project: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=project, check=True, capture_output=True, text=True).stdout


def clone(path: Path) -> Path:
    """The project as a fresh clone has it (its code, params, configs, dvc.yaml; one commit)."""
    path.mkdir()
    for name in ("pipeline", "stages", "studies", "configs"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", "ablate.py", ".gitignore"):
        shutil.copy2(ROOT / name, path / name)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "clone")
    return path


def ablate_in(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")} | {"PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "ablate.py", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def test_use_paper_then_default_round_trips_to_a_clean_checkout(tmp_path):
    """use paper → check passes → use default → check passes; params.yaml and dvc.yaml are
    byte-identical to the commit and git sees no change and no untracked file (the backup is
    in the ignored artifacts/)."""
    project = clone(tmp_path / "clone")
    write_csv_inputs(ROOT / "configs/paper.yaml", project)  # the data paper needs, under the ignored data/
    start = {name: (project / name).read_bytes() for name in ("params.yaml", "dvc.yaml")}

    used = ablate_in(project, "use", "paper")
    assert used.returncode == 0, used.stderr
    assert "dvc.yaml regenerated" in used.stdout
    assert (project / "params.yaml").read_bytes() == (project / "configs/paper.yaml").read_bytes()
    checked = ablate_in(project, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    back = ablate_in(project, "use", "default")
    assert back.returncode == 0, back.stderr
    checked = ablate_in(project, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {name: (project / name).read_bytes() for name in start} == start
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""
    assert (project / "artifacts/params.yaml.bak").read_bytes() == (project / "configs/paper.yaml").read_bytes()


def test_use_default_after_git_checkout_repairs_dvc_yaml(tmp_path):
    """`git checkout params.yaml` alone leaves paper's dvc.yaml; `ablate use default` finds
    params.yaml already committed and regenerates dvc.yaml, so check passes again."""
    project = clone(tmp_path / "clone")
    write_csv_inputs(ROOT / "configs/paper.yaml", project)
    assert ablate_in(project, "use", "paper").returncode == 0
    git(project, "checkout", "params.yaml")
    assert ablate_in(project, "check").returncode == 1  # dvc.yaml still paper's
    back = ablate_in(project, "use", "default")
    assert back.returncode == 0 and "already holds" in back.stdout, back.stderr
    assert ablate_in(project, "check").returncode == 0
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""


def test_use_default_outside_git_says_why(tmp_path):
    project = clone(tmp_path / "clone")
    shutil.rmtree(project / ".git")
    proc = ablate_in(project, "use", "default")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ablate: error: default: is params.yaml as committed (git show HEAD:./params.yaml), which failed:" in (
        proc.stderr
    )
