"""Print the pipeline's own overhead: no-op `ablate status`, and planning a 1,000-cell grid.

Run: python benchmarks/pipeline_overhead.py   (target: each under 2 s on 2 cores)
Times are wall-clock medians of 5 runs, each a fresh interpreter, as a user would see them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def thousand_cell_params(path: Path) -> None:
    """The shipped ska_lm study with a 10 × 10 × 10 grid (1,000 cells, 3,000+ nodes)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    study = raw["studies"]["ska_lm"]
    study["grid"] = {
        "minhash_k": list(range(16, 26)),
        "router_topk": list(range(10)),
        "adapter_rank": list(range(0, 100, 10)),
    }
    study.pop("cells", None)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def main() -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "params.yaml"
        thousand_cell_params(big)
        plan = (
            "import time; t = time.perf_counter(); from pipeline.plan import build; from stages import RECIPES; "
            f"p = build({str(big)!r}, RECIPES); print(len(p.nodes), time.perf_counter() - t)"
        )
        out = subprocess.run([py, "-c", plan], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
        rows = [
            ("python startup (reference)", wall([py, "-c", "pass"])),
            ("ablate status, default params", wall([py, "-m", "ablate", "status"])),
            ("ablate plan, 1,000-cell grid", wall([py, "-m", "ablate", "--params", str(big), "plan"])),
            ("ablate status, 1,000-cell grid", wall([py, "-m", "ablate", "--params", str(big), "status"])),
        ]
    print(f"planning a 1,000-cell grid in-process: {out[0]} nodes in {float(out[1]):.3f} s")
    for name, seconds in rows:
        print(f"{name:36s} {seconds:6.3f} s  {'ok' if seconds < 2 else 'OVER the 2 s target'}")


if __name__ == "__main__":
    main()
