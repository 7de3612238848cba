"""SKA kernel backends vs sequence length: ms per fwd+bwd step and peak memory.

Run: python benchmarks/ska_backends.py [--L 512 1024 2048] [--B 8] [--csv out.csv]

The bank window and stride are fixed, so the number of sets S grows with L (window 16,
stride 8: S = L/8 - 1 sets, 255 at L = 2048) and the python backend's S×S score matrices (and
its chunked [B, S, S, k] signature comparison) grow with S², while keops streams them. Each
configuration runs in a fresh interpreter (``studies.ska.bench.measure_isolated``) so the
peak memory of one does not hide another's. CPU: peak = process RSS growth over the timed
steps; GPU: torch.cuda.max_memory_allocated growth.

Triton is timed only with a CUDA device: on the CPU it runs through Triton's interpreter,
a correctness tool far too slow to time meaningfully (the script says so and skips it).
The first keops run compiles its formulas (~12 s each, cached in KEOPS_CACHE_FOLDER); the
warm-up steps absorb that, and the compile is not in the timings.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studies.ska.bench import measure_isolated  # noqa: E402

COLUMNS = (
    "backend",
    "precision",
    "L",
    "B",
    "D",
    "k",
    "S",
    "avg_sets_per_seq",
    "avg_set_size",
    "ms_per_step",
    "steps_per_s",
    "peak_mem_mb",
    "wall_s",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--D", type=int, default=64)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--backends", nargs="+", default=["python", "keops", "triton"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch/OpenMP threads (0: library default)")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backends = list(args.backends)
    if "triton" in backends and device == "cpu":
        backends.remove("triton")
        print(
            "triton: not timed — no CUDA device; on the CPU Triton runs only through its interpreter "
            "(TRITON_INTERPRET=1), a correctness tool far too slow to time meaningfully"
        )
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    print(
        f"device {device}, B {args.B}, D {args.D}, k {args.k}, window {args.window}, stride {args.stride}, "
        f"{args.precision}, causal delta_plus_dot, {args.warmup} warm-up + {args.iters} timed steps (fwd+bwd)"
    )
    header = f"{'backend':>8} {'L':>6} {'S':>5} {'ms/step':>10} {'steps/s':>9} {'peak MB':>9}"
    print(header)
    rows = []
    for L in args.L:
        for backend in backends:
            config = dict(
                backend=backend,
                B=args.B,
                L=L,
                D=args.D,
                k=args.k,
                window=args.window,
                stride=args.stride,
                precision=args.precision,
                warmup=args.warmup,
                iters=args.iters,
                device=device,
            )
            if args.threads:
                config["threads"] = args.threads
            r = measure_isolated(env=env, **config)
            rows.append(r)
            print(
                f"{backend:>8} {L:>6} {r['S']:>5} {r['ms_per_step']:>10.1f} {r['steps_per_s']:>9.2f} "
                f"{r['peak_mem_mb']:>9.1f}",
                flush=True,
            )
    by = {(r["backend"], r["L"]): r for r in rows}
    L_max = max(args.L)
    if ("python", L_max) in by and ("keops", L_max) in by:
        p, k = by[("python", L_max)]["peak_mem_mb"], by[("keops", L_max)]["peak_mem_mb"]
        verdict = "less" if k < p else "NOT less"
        print(f"L={L_max}: keops peak {k:.1f} MB vs python peak {p:.1f} MB — keops uses {verdict} peak memory")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
