"""parity: one SKA backend/precision against the python fp32 reference (outputs, gradients).

It runs on ``ctx.device`` (ABLATE_DEVICE) and reports which as its ``device`` metric. On the
CPU, triton runs through its interpreter: TRITON_INTERPRET=1 is set here before triton is
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
    ),
    code=("studies.ska.parity",),
    choices={"backend": ("python", "keops", "triton"), "precision": ("fp32", "fp16", "bf16")},
    threads=2,
    gpus=1,  # compares on the GPU whenever one is visible
)


def run(ctx: Context) -> dict:
    import torch

    cuda = ctx.device.startswith("cuda")
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from studies.ska.parity import compare

    torch.set_num_threads(ctx.threads)
    p = ctx.params
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
        device="cuda" if cuda else "cpu",
    )
    if not result["finite"]:
        raise FloatingPointError(f"{p['backend']} {p['precision']}: non-finite output or gradient")
    return {"backend": p["backend"], "precision": p["precision"], "device": "cuda" if cuda else "cpu", **result}
