"""bench: inference cost of the text path against the latent path at each batch size of
``bench_batch_sizes``.

text: B reads [question ‖ anchor] and generates. latent: A reads the question, the translator
makes M soft tokens, B reads [soft ‖ anchor] and generates. Both generate exactly
``bench_new_tokens`` tokens (no early stop at eos), so the translator's weights do not change
the work and an untrained one of the cell's shape is timed: the stage reads only shape keys,
one node per M shared by the seeds and the stability switch. Per (path, batch): latency per
sample and throughput from the median of ``bench_repeats`` timed runs after one untimed warm-up,
and peak memory: CUDA max allocated on a GPU, the process's peak RSS (VmHWM, reset before each
configuration where the kernel allows) on a CPU. ``load_before`` / ``load_after`` (1-minute
load average) and ``cpu_count`` say how busy the machine was: wall times on a shared CPU are noisy.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.bridge.train import TRANSLATOR_KEYS

PATHS = ("text", "latent")

SPEC = StageSpec(
    name="bench",
    reads=("task", *TRANSLATOR_KEYS, "bench_batch_sizes", "bench_repeats", "bench_new_tokens"),
    needs=("bridge_data", "lms"),
    code=("studies.bridge.bridged", "studies.bridge.lm", "studies.bridge.translator", "stages.bridge.handover"),
    types={"bench_batch_sizes": str, **dict.fromkeys(("bench_repeats", "bench_new_tokens"), int)},
    ranges=dict.fromkeys(("bench_repeats", "bench_new_tokens"), ">= 1"),
    checks={
        "bench_batch_sizes is a comma-separated list of positive ints": lambda bench_batch_sizes: bool(
            batch_sizes(bench_batch_sizes)
        )
    },
    gpus=1,
)


def batch_sizes(text: str) -> list[int]:
    """``"1,4,8"`` → [1, 4, 8]; [] when any entry is not a positive int."""
    parts = [s.strip() for s in text.split(",")]
    return [int(s) for s in parts] if all(s.isdigit() and int(s) > 0 for s in parts) else []


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass  # the peak then covers the process so far; still an upper bound


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run(ctx: Context) -> dict:
    import os
    import statistics
    import time

    import torch

    from stages.bridge.handover import (
        load_examples,
        load_lms,
        load_tokenizers,
        make_bridge,
        tokenise,
        translator_config,
    )
    from studies.bridge.lm import generate
    from studies.bridge.translator import Translator

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    data = ctx.input("bridge_data")
    tok_a, tok_b = load_tokenizers(data)
    lm_a, lm_b, _ = load_lms(ctx.input("lms"), ctx.device)
    torch.manual_seed(0)
    translator = Translator(**translator_config(p, lm_a, lm_b)).to(ctx.device).eval()
    bridge = make_bridge(lm_a, lm_b, translator, tok_a, tok_b)
    sizes = batch_sizes(p["bench_batch_sizes"])
    pairs = tokenise(load_examples(data, "test", p["task"])[: max(sizes)], tok_a, tok_b)
    if len(pairs) < max(sizes):
        raise ValueError(
            f"bench_batch_sizes={p['bench_batch_sizes']!r} needs {max(sizes)} test examples, have {len(pairs)}"
        )

    def once(path: str, batch) -> None:
        x, mask = bridge.b_prompt("text" if path == "text" else "bridged", batch)
        generate(lm_b, inputs_embeds=x, pad_mask=mask, max_new=p["bench_new_tokens"])
        if ctx.device.startswith("cuda"):
            torch.cuda.synchronize()

    load_before = os.getloadavg()[0]
    rows = []
    with torch.no_grad():
        for path in PATHS:
            for b in sizes:
                batch = pairs[:b]
                once(path, batch)  # warm-up, not timed
                _reset_peak(ctx.device)
                times = []
                for _ in range(p["bench_repeats"]):
                    start = time.perf_counter()
                    once(path, batch)
                    times.append(time.perf_counter() - start)
                wall = statistics.median(times)
                rows.append(
                    {
                        "path": path,
                        "M": p["n_soft_tokens"] if path == "latent" else None,
                        "batch": b,
                        "ms_per_sample": 1000 * wall / b,
                        "samples_per_s": b / wall,
                        "peak_mem_mb": _peak_mb(ctx.device),
                        "memory": "cuda_max_allocated" if ctx.device.startswith("cuda") else "process_peak_rss",
                    }
                )
    meta = {"device": ctx.device, "cpu_count": os.cpu_count(), "load_before": load_before}
    meta |= {"load_after": os.getloadavg()[0], "new_tokens": p["bench_new_tokens"], "repeats": p["bench_repeats"]}
    (ctx.out / "bench.json").write_text(json.dumps({"rows": rows, **meta}, indent=1))
    flat = {
        f"{r['path']}_b{r['batch']}_{k}": r[k] for r in rows for k in ("ms_per_sample", "samples_per_s", "peak_mem_mb")
    }
    return flat | {k: v for k, v in meta.items() if k != "device"}
