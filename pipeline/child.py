"""The process a stage computes in: `python -m pipeline.child <job.json>`.

Kept apart from the runner so the parent can see the exit code (including a SIGKILL from
the kernel's OOM killer) and the child's own peak memory, and can publish only on success.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

from pipeline import device as device_mod
from pipeline.spec import Context, Params, Upstream

OOM_EXIT = 3


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def _environment() -> tuple[dict[str, str], dict[str, float]]:
    """Versions of the heavy libraries actually used, CUDA peak memory."""
    versions, extra = {}, {}
    for name in ("torch", "triton", "pykeops", "tokenizers", "datasets", "numpy"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = str(module.__version__)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        extra["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return versions, extra


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    module = importlib.import_module(job["module"])
    device = device_mod.resolve()
    ctx = Context(
        params=Params(job["params"], module.SPEC.name),
        out=Path(job["out"]),
        upstream=tuple(Upstream(u["stage"], u["slug"], Path(u["path"]), tuple(u["cells"])) for u in job["upstream"]),
        study=job["study"],
        threads=job["threads"],
        cells=job["cells"],
        base=job["base"],
        device=device,
    )
    result_path = Path(job["result"])
    try:
        metrics = module.run(ctx) or {}
    except BaseException as error:  # noqa: BLE001 - report every failure, then exit non-zero
        traceback.print_exc()
        result_path.write_text(json.dumps({"error": f"{type(error).__name__}: {error}"[:2000]}))
        return OOM_EXIT if _is_oom(error) else 1
    versions, extra = _environment()
    described = device_mod.describe(device)
    result_path.write_text(json.dumps({"metrics": {**metrics, **extra}, "device": described, "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
