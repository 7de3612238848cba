"""bench: ms/step (fwd+bwd) and peak memory of one attention implementation at one length.

Token attention (``naive`` matmul+softmax, ``sdpa``) runs over L tokens; SKA backends run
set attention over the L/stride window sets of the same sequences. ``scope``: ``kernel``
times the attention alone, ``block`` the whole layer around it (SKA: pooling, projections,
kernel, router; token attention: qkv and output projections). Two threads, so that
Snakemake runs a benchmark alone on this machine's two cores.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="bench",
    reads=(
        "backend",
        "precision",
        "scope",
        "seq_len",
        "batch_size",
        "d_model",
        "n_heads",
        "minhash_k",
        "window",
        "stride",
        "warmup",
        "iters",
        "device",
    ),
    code=("studies.ska.bench",),
    types=dict.fromkeys(
        ("seq_len", "batch_size", "d_model", "minhash_k", "window", "stride", "n_heads", "warmup", "iters"), int
    ),
    ranges=dict.fromkeys(
        ("seq_len", "batch_size", "d_model", "minhash_k", "window", "stride", "n_heads", "iters"), ">= 1"
    )
    | {"warmup": ">= 0"},
    checks={
        "d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0,
        "window <= seq_len (a set is a window of one sequence)": lambda window, seq_len: window <= seq_len,
    },
    choices={
        "backend": ("naive", "sdpa", "python", "keops", "triton"),
        "precision": ("fp32", "fp16", "bf16"),
        "scope": ("kernel", "block"),
        "device": ("cpu", "cuda"),
    },
    threads=2,
    gpus=lambda p: int(p["device"] == "cuda"),  # a CPU benchmark holds no GPU slot
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.bench import measure, measure_dot

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    if p["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("bench param device: cuda but torch sees no CUDA device (use device: cpu)")
    common = dict(
        B=p["batch_size"],
        L=p["seq_len"],
        D=p["d_model"],
        precision=p["precision"],
        warmup=p["warmup"],
        iters=p["iters"],
        device=p["device"],
        scope=p["scope"],
    )
    if p["backend"] in ("naive", "sdpa"):
        return measure_dot(p["backend"], heads=p["n_heads"], **common)
    return measure(p["backend"], k=p["minhash_k"], window=p["window"], stride=p["stride"], heads=p["n_heads"], **common)
