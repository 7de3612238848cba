"""Every stage that builds or runs a model computes on ``ctx.device``, and ABLATE_DEVICE is an
execution setting: checked up front, never part of a fingerprint.

The device test needs no GPU. The model studies are built tiny on the CPU (the machinery and
``SHRINK`` table of ``test_recipes_build``); then every model stage's ``run(ctx)`` runs again on
their upstream artifacts with ``ctx.device = "meta"`` under ``VirtualDevice``: a torch function
mode in which "meta" stands for an accelerator. Moving a tensor there (``.to``, ``Module.to``, a
factory's ``device=``) keeps its data on the CPU but marks it as on the device, and ``.device``
answers "meta" for it; every result of an op on marked operands is marked. So the stage computes
for real (data-dependent ops such as banks' ``repeat_interleave`` work, which real meta tensors
cannot do), while every op is checked as CUDA would check it: an op mixing marked and unmarked
operands (a 0-dim CPU scalar excepted; a CPU index into a device tensor and ``copy_`` allowed)
or a ``.numpy()`` of a marked tensor is recorded. A global forward pre-hook records where each
module's own parameters and tensor inputs were. A stage that leaves its model or a batch on the
CPU, or builds a tensor there and combines it with device ones, is named with the op.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils.weak import WeakTensorKeyDictionary

from pipeline import device as device_mod
from pipeline import plan as plan_mod
from pipeline.codehash import ROOT
from pipeline.spec import Context, Params, Upstream
from stages import RECIPES
from tests.common import test_recipes_build as recipes_build

# Stages that build no model (data, tokenizers, banks, reports) or measure a device of their own
# (bench and parity take theirs as a measured quantity; maze parity counts parameters on meta by
# design). Every other stage of every recipe is checked below, so a new model stage is covered
# without being listed.
NO_MODEL = {
    "stages.common.corpus",
    "stages.common.tokenize",
    "stages.common.images",
    "stages.common.sudoku_data",
    "stages.common.ranking_report",
    "stages.ska.banks",
    "stages.ska.setrecall_data",
    "stages.ska.delta",
    "stages.ska.delta_report",
    "stages.ska.bench",
    "stages.ska.bench_report",
    "stages.ska.parity",
    "stages.ska.parity_report",
    "stages.ska.lm_report",
    "stages.poh.maze_data",
    "stages.poh.maze_parity",
    "stages.poh.maze_report",
    "stages.ebm.report",
    "stages.bridge.bridge_data",
    "stages.bridge.report",
}
MODEL_STAGES = sorted({m for modules in RECIPES.values() for m in modules} - NO_MODEL)
MODEL_STUDIES = sorted(
    name
    for name, study in recipes_build._params()["studies"].items()
    if set(RECIPES[study.get("kind", name)]) & set(MODEL_STAGES)
)
DEVICE = torch.device("meta")  # the stand-in accelerator's name; the data stay on the CPU
NOT_COMPUTE = {"_has_compatible_shallow_copy_type", "__repr__", "__format__"}  # queries, not ops
INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}  # device self, CPU indices: legal on CUDA


def _is_device(arg) -> bool:
    return isinstance(arg, (str, torch.device)) and torch.device(arg) == DEVICE


class VirtualDevice(TorchFunctionMode):
    """Marks tensors moved to ``DEVICE`` and records what CUDA would refuse (module docstring)."""

    def __init__(self):
        super().__init__()
        self.marked = WeakTensorKeyDictionary()
        self.mixed: Counter[str] = Counter()

    def on(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t in self.marked

    def mark(self, out, unless=()):
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and not any(t is u for u in unless):
                self.marked[t] = True
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in ("__get__", "__set__"):  # tensor properties: device, data, grad, T, ...
            return self._property(func, name, args)
        if name in ("to", "cpu", "cuda"):
            return self._move(func, name, args, kwargs)
        if _is_device(kwargs.get("device")):  # a factory: torch.zeros(..., device=x.device)
            kwargs["device"] = "cpu"
            return self.mark(func(*args, **kwargs))
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        marked = [t for t in tensors if self.on(t)]
        if marked and name not in NOT_COMPUTE:
            plain = [t for t in tensors if not self.on(t) and t.dim() > 0]
            if name in ("numpy", "__array__"):
                self.mixed[f"{name} of a device tensor"] += 1
            elif name in INDEXING:
                if not self.on(args[0]):
                    self.mixed[f"{name}: a CPU tensor indexed with device operands"] += 1
            elif plain and name != "copy_":
                self.mixed[f"{name}: device and CPU operands"] += 1
        out = func(*args, **kwargs)
        return self.mark(out, unless=[t for t in tensors if not self.on(t)]) if marked else out

    def _property(self, func, name, args):
        attr, owner = func.__self__.__name__, args[0]
        if name == "__set__":  # Module.to: param.data = moved
            func(*args)
            if attr == "data":
                if self.on(args[1]):
                    self.marked[owner] = True
                else:
                    self.marked.pop(owner, None)
            return None
        if attr == "device" and self.on(owner):
            return DEVICE
        out = func(*args)  # data, grad, T, ...: of a device tensor, on the device
        return self.mark(out) if self.on(owner) and isinstance(out, torch.Tensor) else out

    def _move(self, func, name, args, kwargs):
        this, rest = args[0], list(args[1:])
        target = kwargs.get("device", next((a for a in rest if isinstance(a, (str, torch.device))), None))
        other = next((a for a in rest if isinstance(a, torch.Tensor)), None)
        to_device = name == "cuda" or _is_device(target) or (other is not None and self.on(other))
        if name == "cuda":
            name, rest = "to", ["cpu"]
        rest = ["cpu" if _is_device(a) else a for a in rest]
        if _is_device(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if other is not None:  # x.to(y): y's dtype and device
            rest = [a if a is not other else other.dtype for a in rest]
        out = getattr(torch.Tensor, name)(this, *rest, **kwargs)
        out = out.view_as(out) if out is this else out  # a new tensor object to mark (or not)
        moving_elsewhere = name == "cpu" or (target is not None and not _is_device(target))
        if to_device or (self.on(this) and not moving_elsewhere):
            self.marked[out] = True
        return out


class ModuleDevices:
    """A global forward pre-hook: the device types of every module call's own parameters, own
    buffers (a module with neither parameters nor inputs, such as a position table built from an
    index buffer, is placed by them) and tensor inputs, per module class."""

    def __init__(self):
        self.seen: dict[str, set[str]] = {}

    def __call__(self, module, inputs):
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        tensors += [t for t in pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)]
        self.seen.setdefault(type(module).__name__, set()).update(t.device.type for t in tensors)

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture(scope="module")
def built(tmp_path_factory, shrunk_store):
    """The model studies, shrunk by ``SHRINK`` and built on the CPU into a temp dir (one
    process per study, as ``test_recipes_build`` does): the upstream artifacts of the checks."""
    root = tmp_path_factory.mktemp("device")
    params = root / "params.yaml"
    shrunk, problems = recipes_build.shrunk_params()
    assert not problems, problems
    shrunk["studies"] = {s: shrunk["studies"][s] for s in MODEL_STUDIES}
    params.write_text(yaml.safe_dump(shrunk, sort_keys=False))
    env = {
        **os.environ,
        "ABLATE_ARTIFACTS": str(root / "artifacts"),
        "ABLATE_STORE": str(shrunk_store),  # shared with test_recipes_build: its nodes are restored
        "ABLATE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
    }
    with ThreadPoolExecutor(recipes_build.WORKERS) as pool:
        results = dict(
            zip(MODEL_STUDIES, pool.map(lambda s: recipes_build._build(s, params, env), MODEL_STUDIES), strict=True)
        )
    return {"params": params, "artifacts": root / "artifacts", "results": results}


def _meta_context(plan, node, artifacts: Path, out: Path) -> Context:
    upstream = tuple(
        Upstream(u.stage, u.slug, u.workspace(artifacts), tuple(u.cells if node.spec.gather else node.cells))
        for u in plan.upstream_nodes(node)
    )
    return Context(Params(node.params, node.spec.name), out, upstream, node.study, device="meta")


@pytest.mark.parametrize("study", MODEL_STUDIES)
def test_every_model_stage_computes_on_the_device_it_is_given(study, built, tmp_path):
    """Each model stage's run(ctx) on ``ctx.device = "meta"`` (the stand-in accelerator) runs
    every module with its parameters and inputs on it, and no op that CUDA would refuse: a
    stage that leaves a model, a batch or a tensor it builds on the CPU is named here."""
    code = built["results"][study][study]["code"]
    assert code == 0, f"{study}: the CPU build failed:\n{built['results'][study][study]['output'][-4000:]}"
    plan = plan_mod.build(built["params"], RECIPES, only=[study])
    nodes = [n for n in plan.nodes.values() if n.module in MODEL_STAGES]
    assert nodes, f"{study}: no model stage"
    torch.set_num_threads(1)
    for n in nodes:
        out = tmp_path / n.label.replace("/", "__")
        out.mkdir()
        ctx = _meta_context(plan, n, built["artifacts"], out)
        module = importlib.import_module(n.module)
        with ModuleDevices() as modules, VirtualDevice() as device:
            module.run(ctx)
        assert modules.seen, f"{n.label}: ran no module"
        off = {cls: sorted(devs) for cls, devs in modules.seen.items() if devs != {"meta"}}
        assert not off, f"{n.label}: modules with parameters or inputs off the device: {off}"
        assert not device.mixed, f"{n.label}: ops CUDA would refuse: {dict(device.mixed)}"


TOY = ROOT / "tests" / "toy_project"
NODE = ("toy", "gen", "seed=0")


@pytest.fixture
def toy(tmp_path) -> Path:
    """A throwaway project: the repository's pipeline with the toy recipe (no torch in its stages)."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TOY / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(TOY / "params.yaml", tmp_path / "params.yaml")
    shutil.copy2(ROOT / "ablate.py", tmp_path / "ablate.py")
    return tmp_path


def run_in(toy: Path, device: str, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in the toy project with ABLATE_DEVICE=device, its store and artifacts inside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABLATE_")}
    env |= {"ABLATE_DEVICE": device, "ABLATE_STORE": str(toy / "store"), "PYTHONPATH": str(toy)}
    return subprocess.run([sys.executable, *args], cwd=toy, env=env, capture_output=True, text=True, timeout=120)


def untouched(toy: Path) -> bool:
    """Nothing computed, published, logged or recorded as a failure."""
    return not (toy / "store").exists() and not (toy / "artifacts").exists()


def test_requested_device_is_validated_without_torch(monkeypatch):
    for value, expected in (("", "auto"), ("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda")):
        monkeypatch.setenv("ABLATE_DEVICE", value)
        assert device_mod.requested() == expected
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")
    assert device_mod.resolve() == "cpu" and device_mod.describe("cpu") == "cpu"
    monkeypatch.setenv("ABLATE_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"ABLATE_DEVICE='tpu' is not one of auto, cpu, cuda"):
        device_mod.requested()


def test_an_unknown_device_fails_the_build_and_the_ablate_command_clearly_and_publishes_nothing(toy):
    built = run_in(toy, "tpu", "-m", "stages", *NODE)
    assert built.returncode == 2 and "Traceback" not in built.stderr
    assert "toy/gen/seed=0: error: ABLATE_DEVICE='tpu' is not one of auto, cpu, cuda" in built.stderr
    assert untouched(toy)
    checked = run_in(toy, "tpu", "ablate.py", "check")
    assert checked.returncode == 2 and "ablate: error: ABLATE_DEVICE='tpu'" in checked.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_cuda_without_a_device_stops_before_any_work_and_cpu_then_builds(toy):
    refused = run_in(toy, "cuda", "-m", "stages", *NODE)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "toy/gen/seed=0: error: ABLATE_DEVICE=cuda but torch sees no CUDA device" in refused.stderr
    assert untouched(toy)
    built = run_in(toy, "cpu", "-m", "stages", *NODE)  # the same command builds where the device exists
    assert built.returncode == 0, built.stderr
    meta = json.loads((toy / "artifacts" / "/".join(NODE) / "meta.json").read_text())
    assert meta["status"] == "ok" and meta["device"] == "cpu"


def test_the_device_setting_is_not_in_fingerprints(toy):
    """Built under ABLATE_DEVICE=cpu, the node is up to date under auto: one fingerprint."""
    assert run_in(toy, "cpu", "-m", "stages", *NODE).returncode == 0
    again = run_in(toy, "auto", "-m", "stages", *NODE)
    assert again.returncode == 0 and "toy/gen/seed=0: up to date" in again.stderr
    log = (toy / "artifacts" / ".logs" / "builds.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in log] == ["computed", "up_to_date"]


def test_snakemake_refuses_an_unknown_device_when_it_parses_the_workflow(tmp_path):
    from tests.engines.conftest import make_project

    project = make_project(tmp_path / "project")
    project.env["ABLATE_DEVICE"] = "tpu"
    proc = project.snakemake(check=False)
    assert proc.returncode != 0
    assert "ABLATE_DEVICE='tpu' is not one of auto, cpu, cuda" in proc.stderr + proc.stdout
    assert not (project.path / "artifacts" / ".fingerprints").exists()  # refused before writing them: no job ran
