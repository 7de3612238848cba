"""GPU slots through the real engine: a stage declaring ``gpus=1`` gets Snakemake's ``gpu`` resource
(``--resources gpu=N`` bounds how many run at once) and, from the runner, a child whose
CUDA_VISIBLE_DEVICES names the one device it holds. Fake devices (ABLATE_GPUS), so no GPU is needed."""

import itertools
import json
import re

import pytest

POWER_SPEC = 'needs=("gen",), ranges={"exponent": ">= 0"})'
SEEN = 'os.environ.get("CUDA_VISIBLE_DEVICES")'


@pytest.fixture
def gpu_project(project, tmp_path):
    """The toy project with ``power`` declared a GPU stage; ``gen`` and ``power`` report the devices they saw."""
    project.edit("stages/power.py", POWER_SPEC, POWER_SPEC.replace("})", "}, gpus=1)"))
    project.edit("stages/power.py", "import json\n", "import json\nimport os\nimport time\n")
    project.edit(
        "stages/power.py",
        '    return {"total": sum(out)}',
        f'    time.sleep(0.5)  # two jobs would overlap if allowed\n    return {{"total": sum(out), "cuda": {SEEN}}}',
    )
    project.edit("stages/gen.py", "import json\n", "import json\nimport os\n")
    project.edit(
        "stages/gen.py", '    return {"total": sum(values)}', f'    return {{"total": sum(values), "cuda": {SEEN}}}'
    )
    project.env.pop("CUDA_VISIBLE_DEVICES", None)
    project.env.update({"ABLATE_GPUS": "0,1", "ABLATE_GPU_LOCK_DIR": str(tmp_path / "gpu-locks")})
    return project


def metas(project, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((project.path / "artifacts" / "toy" / stage).glob("*/meta.json"))]


def test_gpu_one_runs_gpu_jobs_one_at_a_time_each_pinned_and_cpu_jobs_unpinned(gpu_project):
    run = gpu_project.snakemake("--resources", "gpu=1")
    powers, gens = metas(gpu_project, "power"), metas(gpu_project, "gen")
    assert len(powers) == 5 and len(gens) == 3  # 2×2 grid + one named cell; gen is shared across exponents
    assert [m["metrics"]["cuda"] for m in powers] == ["0"] * 5  # one at a time: device 0 is always free again
    assert [m["metrics"]["cuda"] for m in gens] == [None] * 3  # gpus=0: the child's env is left alone
    spans = sorted((m["timing"]["started"], m["timing"]["started"] + m["timing"]["wall_s"]) for m in powers)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.05, spans  # never two GPU jobs at once (0.05 s: rounding of wall_s)
    listed = re.findall(r"^\s+resources: .*\bgpu=(\d+)$", run.stdout + run.stderr, re.M)
    # Snakemake's job listing: 3 gen, 5 power (the report job prints its one-line message instead)
    assert sorted(listed) == ["0"] * 3 + ["1"] * 5


def test_gpu_zero_with_device_cuda_and_a_malformed_device_list_fail_at_parse(gpu_project):
    gpu_project.env["ABLATE_DEVICE"] = "cuda"
    run = gpu_project.snakemake("-n", "--resources", "gpu=0", check=False)
    assert run.returncode != 0
    assert (
        "--resources gpu=0 grants no GPU, but ABLATE_DEVICE=cuda and these stages need one: toy/power; "
        "pass --resources gpu=<number of GPUs>, or ABLATE_DEVICE=cpu"
    ) in run.stdout + run.stderr
    del gpu_project.env["ABLATE_DEVICE"]
    gpu_project.env["ABLATE_GPUS"] = "x,y"
    run = gpu_project.snakemake("-n", check=False)
    assert run.returncode != 0
    assert "ABLATE_GPUS='x,y': expected a comma list of distinct device ids such as 0,1" in run.stdout + run.stderr
