"""Peak-memory estimates for an SKA LM training step, and the memory-safe preset.

The estimate sums the plan's sanity formulas (signatures N_sets·k·8 bytes, Φ pooling
N_sets·D·bytes, score tiles) with the usual transformer terms (activations kept for the
backward pass, logits, parameters with AdamW state). It is deliberately simple and errs
high; `preset` picks the largest window/stride/minhash_k/router_topk whose estimate fits
the budget. Plain Python (no torch) so the CLI can answer instantly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
STREAMED = ("keops", "triton")  # backends that never store the S × S score matrix
TILE = 64  # query/key sets per streamed tile
MARGIN = 0.25  # keep a quarter of the free memory for the allocator, the OS and estimate error


@dataclass(frozen=True)
class Shape:
    batch: int
    seq_len: int
    d_model: int
    n_layers: int
    vocab: int
    window: int
    stride: int
    minhash_k: int
    router_topk: int
    precision: str = "fp32"
    backend: str = "python"

    @property
    def n_sets(self) -> int:
        """Sets per sequence: starts 0, s, 2s, … until a window reaches the end."""
        if self.seq_len <= self.window:
            return 1
        return -(-(self.seq_len - self.window) // self.stride) + 1


def estimate(shape: Shape) -> dict[str, int]:
    """Bytes per component of one training step's peak (forward kept for backward)."""
    b, L, D, N, e = shape.batch, shape.seq_len, shape.d_model, shape.n_layers, BYTES[shape.precision]
    S, k = shape.n_sets, shape.minhash_k
    readable = S if shape.router_topk == 0 else min(shape.router_topk, S)
    scores = b * TILE * TILE * e if shape.backend in STREAMED else b * S * S * e * 4  # scores, exp, weights, mask
    params = (2 * shape.vocab * D + N * 14 * D * D) * 4  # embeddings, atoms, block weights (fp32 master)
    return {
        "signatures": b * S * k * 8,
        "atom_gather": N * b * S * shape.window * D * e * 2,  # E'[atoms] per layer, with adapter
        "phi_pooling": N * b * S * D * e * 5,  # Φ, Φ̂, A Φ̂, B Φ̂, V
        "set_scores": N * scores,
        "router": N * b * L * (S + readable) * e * 2,
        "activations": N * b * L * D * e * 14,  # norms, conv, set output, MLP (4D in and out)
        "logits": b * L * shape.vocab * e * 3,
        "params_and_adamw": params * 4,  # weights, grads, two moments
    }


def available_bytes(device: str = "auto") -> tuple[int, str]:
    """Free memory of the device: CUDA free bytes, else the kernel's MemAvailable."""
    if device in ("auto", "cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                free, _ = torch.cuda.mem_get_info()
                return free, f"cuda:{torch.cuda.current_device()} free"
        except ImportError:
            pass
        if device == "cuda":
            raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024, f"RAM available ({os.uname().nodename})"


def fits(shape: Shape, budget: int) -> bool:
    return sum(estimate(shape).values()) <= budget


def preset(base: Shape, budget: int, windows=(64, 32, 16, 8), ks=(256, 128, 64, 32, 16), topks=(0, 8, 4, 1)):
    """The largest (window, stride = window/2, minhash_k, router_topk) that fits, or None.

    Larger windows and k first (richer sets, better estimates), then the densest router
    (0 = every readable set) before sparser ones.
    """
    for w in windows:
        for k in ks:
            for t in topks:
                candidate = Shape(
                    **{**base.__dict__, "window": w, "stride": max(1, w // 2), "minhash_k": k, "router_topk": t}
                )
                if fits(candidate, budget):
                    return candidate
    return None
