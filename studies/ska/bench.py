"""Benchmark of one SKA backend: ms per forward+backward step and peak memory.

``measure`` times, on a fixed random batch (tokens → window bank → MinHash signatures →
padded sets), either ``scope="kernel"``: ``kernels.set_attend`` alone (the set-to-set
attention, what the backends differ in) on random qc, kc, v [B, S, D] with gradients, or
``scope="block"``: the whole ``SetKernelAttention`` layer the models run (atom embedding and
set pooling, content projections, kernel, router over L tokens, output gate), input x
[B, L, D], gradients for x and every parameter. ``measure_dot`` times the token-attention
baselines at the same two scopes. One step = forward + backward.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` growth over the timed steps. On
CPU, process RSS growth: after the warm-up steps (compiles, library loads) freed heap is
handed back (``malloc_trim``) and the RSS is the baseline; the peak is the highest of an RSS
sampler thread (every 0.5 ms) and ``ru_maxrss`` (exact, but only if this call raised the
process's lifetime peak, so ``measure_isolated`` runs each measurement in a fresh process).

``python -m studies.ska.bench '{"backend": "keops", "L": 1024}'`` prints one result as JSON.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time

import torch

from .banks import add_signatures, build_bank
from .kernels import check_precision, set_attend

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: RSS growth may then undercount reused heap
        pass


class _RssPeak:
    """Highest RSS seen by a sampler thread while the block runs."""

    def __init__(self, interval: float = 5e-4):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = _rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def make_batch(B: int, L: int, D: int, k: int, window: int, stride: int, *, vocab_size: int = 256, seed: int = 0):
    """(sig, size, end, valid), (qc, kc, v), upstream gradient w, shape stats — all float32 CPU."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (B, L), generator=g)
    bank = add_signatures(build_bank(tokens, window, stride), k=k, seed=seed, vocab_size=vocab_size)
    pb = bank.padded()
    S = pb.valid.shape[1]
    qc, kc, v, w = (torch.randn(B, S, D, generator=g) for _ in range(4))
    stats = dict(
        S=S,
        avg_sets_per_seq=bank.n_sets / B,
        avg_set_size=float(bank.sizes.float().mean()) if bank.n_sets else 0.0,
    )
    return (pb.sig, pb.size, pb.end, pb.valid), (qc, kc, v), w, stats


def _time_and_peak(step, warmup: int, iters: int, dev: torch.device) -> tuple[list[float], int]:
    """Seconds of each timed step, and peak memory growth in bytes over them."""
    cuda = dev.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        _trim()
        base = _rss()
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    with _RssPeak() as sampler:
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(sampler.peak, maxrss if maxrss > maxrss_before else 0) - base
    return times, peak


SCOPES = ("kernel", "block")


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown bench scope {scope!r}; choose one of {', '.join(SCOPES)}")


def _ska_block_step(backend, precision, B, L, D, heads, k, window, stride, score_mode, causal, vocab_size, seed, dev):
    """The fwd+bwd step of one SetKernelAttention layer (router, pooling, kernel) over [B, L, D]."""
    from .model import LMConfig, SetKernelAttention

    shape = dict(d_model=D, n_layers=1, n_heads=heads, window=window, stride=stride, minhash_k=k)
    cfg = LMConfig(vocab_size, L, **shape, score_mode=score_mode, backend=backend, precision=precision)
    torch.manual_seed(seed)
    layer, atoms = SetKernelAttention(cfg, causal=causal).to(dev), torch.nn.Embedding(vocab_size, D).to(dev)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (B, L), generator=g)
    pb = add_signatures(build_bank(tokens, window, stride), k=k, seed=seed, vocab_size=vocab_size).to(dev).padded()
    x = torch.randn(B, L, D, generator=g).to(dev).requires_grad_(True)
    w = torch.randn(B, L, D, generator=g).to(dev)
    params = [x, *layer.parameters(), *atoms.parameters()]

    def step():
        for t in params:
            t.grad = None
        (layer(x, atoms(pb.atoms), pb) * w).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return step


def measure(
    backend: str,
    B: int,
    L: int,
    D: int,
    k: int,
    window: int,
    stride: int,
    precision: str = "fp32",
    warmup: int = 2,
    iters: int = 5,
    device: str = "cpu",
    *,
    scope: str = "kernel",
    heads: int = 4,
    score_mode: str = "delta_plus_dot",
    causal: bool = True,
    vocab_size: int = 256,
    seed: int = 0,
) -> dict:
    """ms_per_step, steps_per_s, wall_s, peak_mem_mb and the shapes of one configuration.

    ``heads`` only shapes the block's config: SKA's weights serve all heads (Dv = D).
    Raises ValueError for an unknown scope or a backend/precision combination that does not exist.
    """
    start = time.perf_counter()
    _check_scope(scope)
    dtype = check_precision(backend, precision)
    dev = torch.device(device)
    fixed, x, w, stats = make_batch(B, L, D, k, window, stride, vocab_size=vocab_size, seed=seed)
    fixed = [t.to(dev) for t in fixed]
    x = [t.to(dev, dtype).requires_grad_(True) for t in x]
    w = w.to(dev, dtype)
    kw = dict(gamma=0.3, beta=1.0 / D, tau=1.0, eta=1.0, score_mode=score_mode, causal=causal)
    cuda = dev.type == "cuda"

    def kernel_step():
        for t in x:
            t.grad = None
        z = set_attend(*fixed, *x, backend=backend, precision=precision, **kw)
        (z * w).sum().backward()
        if cuda:
            torch.cuda.synchronize(dev)

    step = kernel_step
    if scope == "block":
        args = (backend, precision, B, L, D, heads, k, window, stride, score_mode, causal, vocab_size, seed, dev)
        step = _ska_block_step(*args)

    times, peak = _time_and_peak(step, warmup, iters, dev)
    ms = 1000 * sum(times) / max(len(times), 1)
    return dict(
        backend=backend,
        precision=precision,
        scope=scope,
        device=str(dev),
        score_mode=score_mode,
        ms_per_step=ms,
        steps_per_s=1000 / ms if ms > 0 else float("inf"),
        wall_s=time.perf_counter() - start,
        peak_mem_mb=max(peak, 0) / 2**20,
        B=B,
        L=L,
        H=heads,
        D=D,
        k=k,
        window=window,
        stride=stride,
        warmup=warmup,
        iters=iters,
        threads=torch.get_num_threads(),
        **stats,
    )


def measure_dot(
    kind: str,
    B: int,
    L: int,
    D: int,
    heads: int = 4,
    precision: str = "fp32",
    warmup: int = 2,
    iters: int = 5,
    device: str = "cpu",
    causal: bool = True,
    seed: int = 0,
    *,
    scope: str = "kernel",
) -> dict:
    """The token-attention baselines of the plan's tables, timed exactly like ``measure``.

    ``naive``: plain PyTorch attention (matmul, masked softmax, matmul; no SDPA) over L tokens;
    ``sdpa``: ``F.scaled_dot_product_attention``. ``scope="kernel"``: q, k, v [B, heads, L,
    D/heads]; ``scope="block"``: the attention layer around it, x [B, L, D] → qkv projection →
    attention → output projection (the models' ``CausalSelfAttention``), fwd + bwd.
    """
    if kind not in ("naive", "sdpa"):
        raise ValueError(f"unknown dot-attention kind {kind!r}; choose naive or sdpa")
    _check_scope(scope)
    start, dev = time.perf_counter(), torch.device(device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    g = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(B, heads, L, D // heads, generator=g).to(dev, dtype).requires_grad_(True) for _ in range(3)]
    mask = torch.ones(L, L, dtype=torch.bool, device=dev).tril() if causal else None
    x = torch.randn(B, L, D, generator=g).to(dev, dtype).requires_grad_(True)
    torch.manual_seed(seed)
    proj_in, proj_out = torch.nn.Linear(D, 3 * D).to(dev, dtype), torch.nn.Linear(D, D).to(dev, dtype)
    params = [x, *proj_in.parameters(), *proj_out.parameters()] if scope == "block" else qkv

    def step():
        for t in params:
            t.grad = None
        q, k, v = qkv
        if scope == "block":
            q, k, v = proj_in(x).view(B, L, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        if kind == "sdpa":
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            scores = q @ k.transpose(-1, -2) / (D // heads) ** 0.5  # [B, H, L, L]
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            out = torch.softmax(scores, -1) @ v
        if scope == "block":
            out = proj_out(out.transpose(1, 2).reshape(B, L, D))
        out.float().sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times, peak = _time_and_peak(step, warmup, iters, dev)
    ms = 1000 * sum(times) / max(len(times), 1)
    return dict(
        backend=kind,
        precision=precision,
        scope=scope,
        device=str(dev),
        ms_per_step=ms,
        steps_per_s=1000 / ms,
        wall_s=time.perf_counter() - start,
        peak_mem_mb=max(peak, 0) / 2**20,
        B=B,
        L=L,
        H=heads,
        D=D,
        warmup=warmup,
        iters=iters,
        threads=torch.get_num_threads(),
    )


def measure_isolated(env: dict | None = None, timeout: float | None = None, **config) -> dict:
    """``measure(**config)`` in a fresh interpreter (clean RSS peak, own imports)."""
    cmd = [sys.executable, "-m", "studies.ska.bench", json.dumps(config)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        cmd, cwd=root, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"measure({config}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    config = json.loads(argv[0]) if argv else {}
    defaults = dict(backend="python", B=8, L=1024, D=64, k=64, window=16, stride=8)
    threads = config.pop("threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    print(json.dumps(measure(**{**defaults, **config})))


if __name__ == "__main__":
    main(sys.argv[1:])
