"""parity: one SKA backend/precision against the python fp32 reference (outputs, gradients).

The device is a param (cpu | cuda), not ABLATE_DEVICE: what a backend computes on a GPU is
the measurement, so a CPU result must never stand in for it in a shared store. On the CPU,
triton runs through its interpreter: TRITON_INTERPRET=1 is set here before triton is
first imported (it reads the variable only then).
"""

from __future__ import annotations

import os

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="parity",
    reads=(
        "backend",
        "precision",
        "batch_size",
        "seq_len",
        "d_model",
        "minhash_k",
        "window",
        "stride",
        "score_mode",
        "causal",
        "data_seed",
        "device",
    ),
    code=("studies.ska.parity",),
    types=dict.fromkeys(("seq_len", "batch_size", "d_model", "minhash_k", "window", "stride", "data_seed"), int)
    | {"causal": bool},
    ranges=dict.fromkeys(("seq_len", "batch_size", "d_model", "minhash_k", "window", "stride"), ">= 1"),
    checks={"window <= seq_len (a set is a window of one sequence)": lambda window, seq_len: window <= seq_len},
    choices={
        "backend": ("python", "keops", "triton"),
        "precision": ("fp32", "fp16", "bf16"),
        "device": ("cpu", "cuda"),
    },
    threads=2,
    gpus=lambda p: int(p["device"] == "cuda"),  # a CPU comparison holds no GPU slot
)


def run(ctx: Context) -> dict:
    import torch

    p = ctx.params
    cuda = p["device"] == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("parity param device: cuda but torch sees no CUDA device (use device: cpu)")
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from studies.ska.parity import compare

    torch.set_num_threads(ctx.threads)
    result = compare(
        p["backend"],
        p["precision"],
        B=p["batch_size"],
        L=p["seq_len"],
        D=p["d_model"],
        k=p["minhash_k"],
        window=p["window"],
        stride=p["stride"],
        score_mode=p["score_mode"],
        causal=p["causal"],
        seed=p["data_seed"],
        device=p["device"],
    )
    if not result["finite"]:
        raise FloatingPointError(f"{p['backend']} {p['precision']}: non-finite output or gradient")
    return {"backend": p["backend"], "precision": p["precision"], "device": p["device"], **result}
