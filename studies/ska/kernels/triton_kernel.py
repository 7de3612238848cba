"""SKA set attention as a Triton kernel: blockwise online softmax, forward and backward.

Computes exactly ``python.set_attend`` (see there) without the S×S score matrix.
(The module is ``triton_kernel``, not ``triton``: a file named ``triton.py`` would shadow the
``triton`` package whenever its folder lands on ``sys.path``, e.g. running it as a script.)

Tiling. One program per (query-set tile of BM sets, sequence b). It walks the key sets in
tiles of BN; per (BM × BN) tile it
  * counts equal signature entries: codes (``common.signature_codes``, int32 ranks, exact) are
    loaded in chunks of BK hash positions, [BM, BK] and [BN, BK], compared by broadcasting to
    [BM, BN, BK] and summed over the chunk — the k loop lives inside the tile;
  * forms J, I, Δ and the mode's signature term, adds β·qc·kcᵀ (``tl.dot`` of the qc tile
    [BM, D] and the kc tile [BN, D]), divides by τ;
  * masks disallowed pairs (rank_k <= threshold_q, ``common.mask_ranks``: valid, causal) with
    −inf, and a key tile with no allowed pair for any query of the tile is skipped;
  * updates the running max m, the running sum l and the accumulator acc += P·V (FlashAttention
    online softmax, max-shifted so a fully masked row never produces NaN).
It stores Z = acc / l (0 where l = 0: no allowed key) and lse = m + log l (0 there).

Backward (FlashAttention-2 style, no S×S buffer; scores recomputed tile by tile):
with P = exp(l − lse), G = dZ, D_i = G_i·Z_i, dS = P ∘ (G Vᵀ − D):
  * ``_bwd_kv``: one program per key tile, walks the query tiles: dV += Pᵀ G, dKc += dSᵀ Qc;
  * ``_bwd_q`` (only with a content term): one program per query tile: dQc += dS Kc;
  dQc and dKc are scaled by β/τ. sig/size/end/valid get no gradient (as in the reference).

Precision. qc, kc, v (and Z, dZ, and the returned gradients) are in the working dtype; all
arithmetic is fp32, which makes fp16/bf16 compute what the python reference computes on the
same values: the qc·kcᵀ and dZ·Vᵀ dots take the working dtype's operands (exact products,
tensor cores on a GPU) with fp32 accumulation; P and dS are never rounded (their dots, P·V,
Pᵀ·dZ, dSᵀ·Qc, dS·Kc, run in fp32, input_precision="ieee": no TF32); the kernels write Z and
the gradients in fp32 and torch rounds them to the working dtype (round to nearest even), and
D_i = dZ_i·Z_i uses the fp32 Z, so Σ_j dS_ij = 0 holds as in the reference. (Rounding P and
dS to bf16 for tensor-core dots, FlashAttention's choice, measured here 1.35x the reference's
error on Z and 2-4x on the gradients: bf16 max abs error of dqc 3.3e-2 instead of 7.8e-3.)

CPU: Triton runs only through its interpreter (TRITON_INTERPRET=1 set before triton is first
imported, and kept set while kernels run; slow, for tests). Two interpreter defects found with
Triton 3.9 are worked around: ``tl.dot`` reads bfloat16 operands as raw uint16 integers
(so under the interpreter dot operands are rounded to the working dtype, then widened to
fp32: the same products), and its fp32→bf16 cast truncates instead of rounding (so no
kernel stores a low-precision value; torch casts the fp32 results).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .common import KEY_OFF, QUERY_OFF, mask_ranks, score_terms, signature_codes

# Interpreter mode is fixed when triton is imported (its tl.max & co. are decorated then) and
# when the kernels below are; both must have seen TRITON_INTERPRET=1 for the CPU to work.
INTERPRET = bool(triton.knobs.runtime.interpret) and type(tl.standard.max).__name__ == "InterpretedFunction"
SIG_MODES = {None: 0, "rbf": 1, "intersect": 2}


@triton.jit
def _dot(a, b, IEEE: tl.constexpr, F32: tl.constexpr, DT: tl.constexpr):
    """a @ b with fp32 accumulation; operands rounded to DT first (F32: kept in fp32 storage)."""
    if F32:
        a = a.to(DT).to(tl.float32)
        b = b.to(DT).to(tl.float32)
    else:
        a = a.to(DT)
        b = b.to(DT)
    if IEEE:
        out = tl.dot(a, b, input_precision="ieee")
    else:
        out = tl.dot(a, b)
    return out


@triton.jit
def _logits(
    codes_ptr,
    size_ptr,
    q,
    kc_ptr,
    base,
    offs_m,
    offs_n,
    m_ok,
    n_ok,
    thr_q,
    rk,
    S,
    K,
    D,
    gamma,
    beta,
    eta,
    tau,
    SIG: tl.constexpr,
    CONTENT: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    IEEE: tl.constexpr,
    F32: tl.constexpr,
    DT: tl.constexpr,
):
    """Masked logits [BM, BN] (−inf where not allowed) of one tile, in fp32."""
    score = tl.zeros([offs_m.shape[0], offs_n.shape[0]], dtype=tl.float32)
    if SIG != 0:
        count = tl.zeros([offs_m.shape[0], offs_n.shape[0]], dtype=tl.int32)
        for h0 in range(0, K, BK):
            offs_h = h0 + tl.arange(0, BK)
            h_ok = offs_h < K
            a = tl.load(
                codes_ptr + (base + offs_m)[:, None] * K + offs_h[None, :], mask=m_ok[:, None] & h_ok[None, :], other=-1
            )
            c = tl.load(
                codes_ptr + (base + offs_n)[:, None] * K + offs_h[None, :], mask=n_ok[:, None] & h_ok[None, :], other=-2
            )
            count += tl.sum((a[:, None, :] == c[None, :, :]).to(tl.int32), axis=2)
        sq = tl.load(size_ptr + base + offs_m, mask=m_ok, other=0.0)
        sk = tl.load(size_ptr + base + offs_n, mask=n_ok, other=0.0)
        j = count.to(tl.float32) / K
        tot = sq[:, None] + sk[None, :]
        inter = j / (1.0 + j) * tot
        if SIG == 1:
            score = tl.exp(-gamma * tl.maximum(tot - 2.0 * inter, 0.0))
        else:
            score = eta * inter / tl.sqrt(tl.maximum(sq[:, None] * sk[None, :], 1.0))
    if CONTENT:
        offs_d = tl.arange(0, BD)
        kt = tl.load(
            kc_ptr + (base + offs_n)[:, None] * D + offs_d[None, :],
            mask=n_ok[:, None] & (offs_d < D)[None, :],
            other=0.0,
        )
        score = score + beta * _dot(q, tl.trans(kt), IEEE, F32, DT)
    logit = score / tau
    allowed = rk[None, :] <= thr_q[:, None]
    return tl.where(allowed, logit, float("-inf"))


@triton.jit
def _fwd(
    codes_ptr,
    size_ptr,
    thr_ptr,
    rnk_ptr,
    qc_ptr,
    kc_ptr,
    v_ptr,
    out_ptr,
    lse_ptr,
    S,
    K,
    D,
    DV,
    gamma,
    beta,
    eta,
    tau,
    SIG: tl.constexpr,
    CONTENT: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    IEEE: tl.constexpr,
    F32: tl.constexpr,
    DT: tl.constexpr,
    KEY_OFF: tl.constexpr,
    QUERY_OFF: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    base = b * S
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_ok = offs_m < S
    offs_d = tl.arange(0, BD)
    offs_v = tl.arange(0, BDV)
    thr_q = tl.load(thr_ptr + base + offs_m, mask=m_ok, other=QUERY_OFF)
    thr_max = tl.max(thr_q, axis=0)
    q = tl.zeros([BM, BD], dtype=tl.float32)
    if CONTENT:
        q = tl.load(
            qc_ptr + (base + offs_m)[:, None] * D + offs_d[None, :],
            mask=m_ok[:, None] & (offs_d < D)[None, :],
            other=0.0,
        )
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BDV], dtype=tl.float32)
    for start_n in range(0, S, BN):
        offs_n = start_n + tl.arange(0, BN)
        n_ok = offs_n < S
        rk = tl.load(rnk_ptr + base + offs_n, mask=n_ok, other=KEY_OFF)
        if tl.min(rk, axis=0) <= thr_max:  # some pair of this tile is allowed
            logit = _logits(
                codes_ptr,
                size_ptr,
                q,
                kc_ptr,
                base,
                offs_m,
                offs_n,
                m_ok,
                n_ok,
                thr_q,
                rk,
                S,
                K,
                D,
                gamma,
                beta,
                eta,
                tau,
                SIG,
                CONTENT,
                BK,
                BD,
                IEEE,
                F32,
                DT,
            )
            m_new = tl.maximum(m_i, tl.max(logit, axis=1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_use)
            p = tl.exp(logit - m_use[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            vt = tl.load(
                v_ptr + (base + offs_n)[:, None] * DV + offs_v[None, :],
                mask=n_ok[:, None] & (offs_v < DV)[None, :],
                other=0.0,
            )
            acc = acc * alpha[:, None] + _dot(p, vt, True, F32, tl.float32)
            m_i = m_new
    has = l_i > 0
    z = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), 0.0)
    tl.store(out_ptr + (base + offs_m)[:, None] * DV + offs_v[None, :], z, mask=m_ok[:, None] & (offs_v < DV)[None, :])
    tl.store(lse_ptr + base + offs_m, lse, mask=m_ok)


@triton.jit
def _bwd_kv(
    codes_ptr,
    size_ptr,
    thr_ptr,
    rnk_ptr,
    qc_ptr,
    kc_ptr,
    v_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dkc_ptr,
    dv_ptr,
    S,
    K,
    D,
    DV,
    gamma,
    beta,
    eta,
    tau,
    SIG: tl.constexpr,
    CONTENT: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    IEEE: tl.constexpr,
    F32: tl.constexpr,
    DT: tl.constexpr,
    KEY_OFF: tl.constexpr,
    QUERY_OFF: tl.constexpr,
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    base = b * S
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < S
    offs_d = tl.arange(0, BD)
    offs_v = tl.arange(0, BDV)
    rk = tl.load(rnk_ptr + base + offs_n, mask=n_ok, other=KEY_OFF)
    rk_min = tl.min(rk, axis=0)
    vt = tl.load(
        v_ptr + (base + offs_n)[:, None] * DV + offs_v[None, :], mask=n_ok[:, None] & (offs_v < DV)[None, :], other=0.0
    )
    dv = tl.zeros([BN, BDV], dtype=tl.float32)
    dk = tl.zeros([BN, BD], dtype=tl.float32)
    for start_m in range(0, S, BM):
        offs_m = start_m + tl.arange(0, BM)
        m_ok = offs_m < S
        thr_q = tl.load(thr_ptr + base + offs_m, mask=m_ok, other=QUERY_OFF)
        if tl.max(thr_q, axis=0) >= rk_min:
            q = tl.zeros([BM, BD], dtype=tl.float32)
            if CONTENT:
                q = tl.load(
                    qc_ptr + (base + offs_m)[:, None] * D + offs_d[None, :],
                    mask=m_ok[:, None] & (offs_d < D)[None, :],
                    other=0.0,
                )
            logit = _logits(
                codes_ptr,
                size_ptr,
                q,
                kc_ptr,
                base,
                offs_m,
                offs_n,
                m_ok,
                n_ok,
                thr_q,
                rk,
                S,
                K,
                D,
                gamma,
                beta,
                eta,
                tau,
                SIG,
                CONTENT,
                BK,
                BD,
                IEEE,
                F32,
                DT,
            )
            lse = tl.load(lse_ptr + base + offs_m, mask=m_ok, other=0.0)
            dlt = tl.load(delta_ptr + base + offs_m, mask=m_ok, other=0.0)
            g = tl.load(
                do_ptr + (base + offs_m)[:, None] * DV + offs_v[None, :],
                mask=m_ok[:, None] & (offs_v < DV)[None, :],
                other=0.0,
            )
            p = tl.exp(logit - lse[:, None])  # [BM, BN], 0 where masked
            dv += _dot(tl.trans(p), g, True, F32, tl.float32)
            if CONTENT:
                dp = _dot(g, tl.trans(vt), IEEE, F32, DT)
                ds = p * (dp - dlt[:, None])
                dk += _dot(tl.trans(ds), q, True, F32, tl.float32)
    tl.store(dv_ptr + (base + offs_n)[:, None] * DV + offs_v[None, :], dv, mask=n_ok[:, None] & (offs_v < DV)[None, :])
    if CONTENT:
        dk = dk * (beta / tau)
        tl.store(
            dkc_ptr + (base + offs_n)[:, None] * D + offs_d[None, :], dk, mask=n_ok[:, None] & (offs_d < D)[None, :]
        )


@triton.jit
def _bwd_q(
    codes_ptr,
    size_ptr,
    thr_ptr,
    rnk_ptr,
    qc_ptr,
    kc_ptr,
    v_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dqc_ptr,
    S,
    K,
    D,
    DV,
    gamma,
    beta,
    eta,
    tau,
    SIG: tl.constexpr,
    CONTENT: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    IEEE: tl.constexpr,
    F32: tl.constexpr,
    DT: tl.constexpr,
    KEY_OFF: tl.constexpr,
    QUERY_OFF: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    base = b * S
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_ok = offs_m < S
    offs_d = tl.arange(0, BD)
    offs_v = tl.arange(0, BDV)
    thr_q = tl.load(thr_ptr + base + offs_m, mask=m_ok, other=QUERY_OFF)
    thr_max = tl.max(thr_q, axis=0)
    q = tl.load(
        qc_ptr + (base + offs_m)[:, None] * D + offs_d[None, :], mask=m_ok[:, None] & (offs_d < D)[None, :], other=0.0
    )
    lse = tl.load(lse_ptr + base + offs_m, mask=m_ok, other=0.0)
    dlt = tl.load(delta_ptr + base + offs_m, mask=m_ok, other=0.0)
    g = tl.load(
        do_ptr + (base + offs_m)[:, None] * DV + offs_v[None, :], mask=m_ok[:, None] & (offs_v < DV)[None, :], other=0.0
    )
    dq = tl.zeros([BM, BD], dtype=tl.float32)
    for start_n in range(0, S, BN):
        offs_n = start_n + tl.arange(0, BN)
        n_ok = offs_n < S
        rk = tl.load(rnk_ptr + base + offs_n, mask=n_ok, other=KEY_OFF)
        if tl.min(rk, axis=0) <= thr_max:
            logit = _logits(
                codes_ptr,
                size_ptr,
                q,
                kc_ptr,
                base,
                offs_m,
                offs_n,
                m_ok,
                n_ok,
                thr_q,
                rk,
                S,
                K,
                D,
                gamma,
                beta,
                eta,
                tau,
                SIG,
                CONTENT,
                BK,
                BD,
                IEEE,
                F32,
                DT,
            )
            p = tl.exp(logit - lse[:, None])
            vt = tl.load(
                v_ptr + (base + offs_n)[:, None] * DV + offs_v[None, :],
                mask=n_ok[:, None] & (offs_v < DV)[None, :],
                other=0.0,
            )
            kt = tl.load(
                kc_ptr + (base + offs_n)[:, None] * D + offs_d[None, :],
                mask=n_ok[:, None] & (offs_d < D)[None, :],
                other=0.0,
            )
            dp = _dot(g, tl.trans(vt), IEEE, F32, DT)
            ds = p * (dp - dlt[:, None])
            dq += _dot(ds, kt, True, F32, tl.float32)
    dq = dq * (beta / tau)
    tl.store(dqc_ptr + (base + offs_m)[:, None] * D + offs_d[None, :], dq, mask=m_ok[:, None] & (offs_d < D)[None, :])


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _pow2(n: int, low: int = 16) -> int:
    return max(low, triton.next_power_of_2(max(n, 1)))


def _config_for(interpret: bool, k: int, dtype: torch.dtype) -> dict:
    """Tile sizes and dot policy. The interpreter wants few, large numpy ops; a GPU wants the
    [BM, BN, BK] comparison to fit in registers (untuned: no GPU in this project's CI)."""
    if interpret:
        blocks = dict(BM=16, BN=16, BK=min(_pow2(k, 1), 64), num_warps=4)
    else:
        blocks = dict(BM=64, BN=32, BK=min(_pow2(k, 1), 4), num_warps=4)
    return dict(blocks, IEEE=dtype == torch.float32, F32=interpret, DT=_TL[dtype])


def _config(k: int, dtype: torch.dtype) -> dict:
    return _config_for(INTERPRET, k, dtype)


def compile_for_gpu(capability: int = 90, precision: str = "bf16", sig_mode=1, content: bool = True) -> dict:
    """Compile the forward and backward kernels ahead of time for an NVIDIA GPU of this compute
    capability (90: H100/H200), down to a cubin with Triton's bundled ptxas — no GPU needed.

    Checks what the interpreter cannot: that the kernels lower for real hardware. Returns
    {kernel name: compiled kernel}. Needs triton imported without TRITON_INTERPRET.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    if INTERPRET:
        raise RuntimeError("compile_for_gpu needs triton imported without TRITON_INTERPRET=1")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    cfg = dict(_config_for(False, 64, dtype), SIG=sig_mode, CONTENT=content, BD=64, BDV=64)
    cfg.update(KEY_OFF=KEY_OFF, QUERY_OFF=QUERY_OFF)
    num_warps = cfg.pop("num_warps")
    value = "*" + {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}[precision]
    types = dict(codes_ptr="*i32", thr_ptr="*i32", rnk_ptr="*i32", qc_ptr=value, kc_ptr=value, v_ptr=value)
    types.update(do_ptr=value, S="i32", K="i32", D="i32", DV="i32")
    out = {}
    for fn in (_fwd, _bwd_kv) + ((_bwd_q,) if content else ()):
        consts = {n: cfg[n] for n in fn.arg_names if n in cfg}
        signature = {
            n: "constexpr" if n in consts else types.get(n, "*fp32" if n.endswith("_ptr") else "fp32")
            for n in fn.arg_names
        }
        src = ASTSource(fn, signature, constexprs=consts)
        out[fn.__name__] = triton_compile(
            src, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps}
        )
    return out


class _TritonAttend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qc, kc, v, data: dict, meta: dict):
        B, S, DV = v.shape
        out = torch.empty(B, S, DV, device=v.device, dtype=torch.float32)  # fp32: see backward
        lse = torch.empty(B, S, device=v.device, dtype=torch.float32)
        cfg = meta["cfg"]
        grid = (triton.cdiv(S, cfg["BM"]), B)
        _fwd[grid](
            data["codes"],
            data["size"],
            data["thr"],
            data["rnk"],
            qc,
            kc,
            v,
            out,
            lse,
            S,
            meta["K"],
            meta["D"],
            DV,
            *meta["scalars"],
            **meta["const"],
            **cfg,
        )
        ctx.save_for_backward(qc, kc, v, out, lse)
        ctx.data, ctx.meta = data, meta
        return out.to(v.dtype)  # torch's cast rounds to nearest even (the interpreter's truncates)

    @staticmethod
    def backward(ctx, grad):
        qc, kc, v, out, lse = ctx.saved_tensors
        data, meta = ctx.data, ctx.meta
        B, S, DV = v.shape
        cfg = meta["cfg"]
        g = grad.to(v.dtype).contiguous()
        delta = (g.float() * out).sum(-1).contiguous()  # [B, S], from the fp32 Z: Σ_j dS_ij = 0
        content = meta["const"]["CONTENT"]
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dqc = dkc = dv = None
        common = (data["codes"], data["size"], data["thr"], data["rnk"], qc, kc, v, g, lse, delta)
        sizes = (S, meta["K"], meta["D"], DV, *meta["scalars"])
        if need_v or (content and need_k):
            dv = torch.empty(v.shape, device=v.device, dtype=torch.float32)
            dkc = torch.empty(kc.shape, device=v.device, dtype=torch.float32) if content else dv  # placeholder
            _bwd_kv[(triton.cdiv(S, cfg["BN"]), B)](*common, dkc, dv, *sizes, **meta["const"], **cfg)
            dkc = dkc.to(kc.dtype) if content and need_k else None
            dv = dv.to(v.dtype) if need_v else None
        if content and need_q:
            dqc = torch.empty(qc.shape, device=v.device, dtype=torch.float32)
            _bwd_q[(triton.cdiv(S, cfg["BM"]), B)](*common, dqc, *sizes, **meta["const"], **cfg)
            dqc = dqc.to(qc.dtype)
        return dqc, dkc, dv, None, None


def set_attend(
    sig: Tensor,
    size: Tensor,
    end: Tensor,
    valid: Tensor,
    qc: Tensor | None,
    kc: Tensor | None,
    v: Tensor,
    *,
    gamma: float,
    beta: float,
    tau: float,
    eta: float,
    score_mode: str,
    causal: bool,
) -> Tensor:
    """Z [B, S, Dv] (dtype of v: float32, float16 or bfloat16): ``python.set_attend`` in Triton."""
    sig_term, content = score_terms(score_mode, beta, qc, kc)
    if not v.is_cuda and not INTERPRET:
        raise ValueError(
            "triton backend on CPU tensors needs Triton's interpreter (TRITON_INTERPRET=1 set before triton "
            "is first imported, and kept; slow, for tests); available on CPU: python, keops"
        )
    dtype = v.dtype
    if dtype not in _TL:
        raise ValueError(f"triton backend takes float32, float16 or bfloat16 values, got {dtype}")
    if content and not (qc.dtype == kc.dtype == dtype):
        raise ValueError(f"triton backend needs qc, kc and v in one dtype, got {qc.dtype}, {kc.dtype}, {dtype}")
    B, S, k = sig.shape
    DV = v.shape[-1]
    if S == 0:
        return v.new_zeros(B, S, DV)
    thr, rnk = mask_ranks(end, valid, causal)
    data = dict(
        codes=signature_codes(sig).contiguous() if sig_term else thr,  # thr: unused placeholder
        size=size.float().contiguous(),
        thr=thr,
        rnk=rnk,
    )
    D = qc.shape[-1] if content else 1
    q = qc.contiguous() if content else v  # v: unused placeholder pointers
    kk = kc.contiguous() if content else v
    meta = dict(
        K=k,
        D=D,
        scalars=(float(gamma), float(beta), float(eta), float(tau)),
        const=dict(
            SIG=SIG_MODES[sig_term], CONTENT=content, BD=_pow2(D), BDV=_pow2(DV), KEY_OFF=KEY_OFF, QUERY_OFF=QUERY_OFF
        ),
        cfg=_config(k, dtype),
    )
    # content-free modes: qc/kc are not inputs, so they get no gradient (as in python);
    # queries with no allowed key come out 0 because their running sum l stays 0
    return _TritonAttend.apply(q, kk, v.contiguous(), data, meta)
