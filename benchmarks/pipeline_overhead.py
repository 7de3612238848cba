"""Print the pipeline's own overhead at 1k / 10k / 100k cells, so its growth is visible.

Run: python benchmarks/pipeline_overhead.py [--sizes 1000 10000 100000] [--timeout 120]

For each size (the shipped ska_lm study with a grid of that many cells, 3 nodes per cell
plus shared ones) it prints, each in a fresh interpreter as a user would see it:
``ablate plan`` and ``ablate status`` (wall seconds and peak RSS), and the command one
engine job runs for an up-to-date node (``python -m stages …``), after ``ablate
fingerprints`` has written the per-node records an engine run writes.
Targets: status ≤ 3 s at 10k and ≤ 30 s at 100k; a node's command ≤ 0.15 s at any size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {1_000: (10, 10, 10), 10_000: (10, 10, 100), 100_000: (10, 100, 100)}


def grid_params(path: Path, cells: int) -> None:
    """The shipped ska_lm study alone, with a minhash_k × router_topk × adapter_rank grid."""
    a, b, c = SHAPES[cells]
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    study = raw["studies"]["ska_lm"]
    study["grid"] = {
        "minhash_k": list(range(16, 16 + a)),
        "router_topk": list(range(b)),
        "adapter_rank": list(range(c)),
    }
    study.pop("cells", None)
    study.pop("exclude", None)
    raw["studies"] = {"ska_lm": study}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def measure(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float | None, float, float]:
    """(wall seconds or None on timeout, CPU seconds, peak RSS MB) of one child process.
    CPU time is shown too because wall time on a shared machine mostly measures the others."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return None, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def up_to_date_node(params: Path, env: dict[str, str]) -> tuple[str, str, str]:
    """Publish a placeholder artifact for one train node and materialise it, so it is up to date."""
    code = (
        "import json; from pipeline.plan import build; from pipeline.store import Store; from stages import RECIPES\n"
        f"plan = build({str(params)!r}, RECIPES)\n"
        "node = next(n for n in plan.nodes.values() if n.stage == 'train')\n"
        "store = Store(); tmp = store.new_tmp(node.fingerprint); (tmp / 'x').write_text('x')\n"
        "store.publish(tmp, node.fingerprint, {'status': 'ok', 'parts': {}})\n"
        "store.materialize(node.fingerprint, node.workspace())\n"
        "print(json.dumps([node.study, node.stage, node.slug]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return tuple(json.loads(out.stdout))


def fmt(seconds: float | None, cpu: float, mb: float, timeout: float) -> str:
    wall = f"{seconds:7.2f} s" if seconds is not None else f"> {timeout:4.0f} s"
    return f"{wall}  {cpu:7.2f} s  {mb:7.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SHAPES), choices=sorted(SHAPES))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a command counts as over")
    args = parser.parse_args()
    py = sys.executable
    print(f"{'':28s}{'wall':>9s}{'CPU':>11s}{'peak RSS':>11s}")
    print(f"python startup (reference)  {fmt(*measure([py, '-c', 'pass'], dict(os.environ), 10), 10)}")
    for cells in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            params = Path(tmp) / "params.yaml"
            grid_params(params, cells)
            env = {**os.environ, "ABLATE_ARTIFACTS": f"{tmp}/artifacts", "ABLATE_STORE": f"{tmp}/store"}
            base = [py, "-m", "ablate", "--params", str(params)]
            print(f"--- {cells:,} cells")
            for name, cmd in (("ablate plan", [*base, "plan"]), ("ablate status", [*base, "status"])):
                print(f"  {name:26s}{fmt(*measure(cmd, env, args.timeout), args.timeout)}")
            written = measure([*base, "fingerprints"], env, args.timeout)
            print(f"  {'ablate fingerprints':26s}{fmt(*written, args.timeout)}")
            if written[0] is None:
                print("  (no per-node figure: the records were not written)")
                continue
            study, stage, slug = up_to_date_node(params, env)
            node_cmd = [py, "-m", "stages", study, stage, slug, "--params", str(params)]
            runs = [measure(node_cmd, env, args.timeout) for _ in range(5)]
            done = sorted(r for r in runs if r[0] is not None)
            median = done[len(done) // 2] if len(done) == len(runs) else max(runs, key=lambda r: r[1])
            print(f"  {'node command, up to date':26s}{fmt(*median, args.timeout)}  (median of 5)")


if __name__ == "__main__":
    main()
