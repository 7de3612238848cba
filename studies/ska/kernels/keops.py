"""SKA set attention with pykeops reductions: the S×S score matrix is never stored.

Computes exactly ``python.set_attend`` (see there). For each sequence, with i the query set
and j the key set, every score is a KeOps *formula* evaluated on the fly:

    count_ij = Sum_h Equal(code_i[h], code_j[h])      (h over the k hash positions)
    J = count / k;  I = J/(1+J)·(|q|+|k|);  Δ = ReLU(|q|+|k| − 2I)
    s_ij = c_rbf·exp(−γΔ) + c_int·η·I/sqrt(max(|q||k|, 1)) + β·qc_i·kc_j
    l_ij = IfElse(threshold_i − rank_j, s_ij/τ, −1e30)    (masking: valid, causal)

with (c_rbf, c_int) = (1, 0) for the delta modes, (0, 1) for the intersect modes and β = 0
(on a 1-wide zero qc/kc) for modes without a content term — exact, since 1·x + 0·y == x.

Signature equality is exact: the int64 MinHash values are replaced (``common.signature_codes``)
by their dense rank among the sets of the same sequence and hash position — integers < S,
exact in float32 — and compared with KeOps' ``Equal``; k is padded to a multiple of 64 with
codes −1 (queries) and −2 (keys), which never match, and J still divides by the true k. Masks
are one integer per set (``common.mask_ranks``), exact in float32.

Forward: one ``Max_SumShiftExpWeight`` reduction over keys of l_ij with weights [1, v_j] gives
the running max m_i, Σ_j e^{l_ij−m_i} and Σ_j e^{l_ij−m_i} v_j in one streamed pass:
Z_i = ratio, lse_i = m_i + log Σ. Queries with no allowed key get 0 afterwards (their
masked row is a finite uniform average over −1e30 logits, zeroed, and gets no gradient).

Backward (own autograd.Function, FlashAttention-2 style, scores recomputed in the formulas):
with P_ij = exp(l_ij − lse_i), G = dZ (zero on key-less queries), D_i = G_i·Z_i,
dl_ij = P_ij (G_i·v_j − D_i):
    dv_j  = Σ_i P_ij G_i                 \\ one reduction over i (axis 0)
    dkc_j = β/τ Σ_i dl_ij qc_i           /
    dqc_i = β/τ Σ_j dl_ij kc_j             one reduction over j (axis 1), content modes only
No gradient flows to sig, size, end or valid (the python reference gives none either:
sizes enter only as constants of the score).

Formulas (each compiled once, ~12 s with g++, then cached on disk): two variants — with the
signature term, or without it (mode ``dot``) — per (padded k, D, Dv) and pass (forward, the
axis-0 and the axis-1 backward). γ, β, η, τ, k and the mode coefficients are runtime
parameters and causal/valid live in the data, so none of them recompiles. The cache is
``KEOPS_CACHE_FOLDER``: set here, if unset and if pykeops was not imported before this module,
to $SKA_KEOPS_CACHE or ~/.cache/ska-keops.

Precision: float32 only. KeOps has no bfloat16, and its float16 mode (GPU only; on the CPU it
fails) would evaluate the codes, masks and ranks in half precision, inexact beyond 2048.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from .common import has_allowed_key, mask_ranks, score_terms, signature_codes

os.environ.setdefault(
    "KEOPS_CACHE_FOLDER",
    os.environ.get("SKA_KEOPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ska-keops"),
)

import pykeops  # noqa: E402  (after KEOPS_CACHE_FOLDER)
from pykeops.torch import Genred  # noqa: E402

pykeops.set_verbose(False)

NEG = -1e30  # masked logit: exp(NEG - m) == 0 for any finite row max m
PARAMS = ("gamma", "beta", "eta", "tau", "k", "neg", "c_rbf", "c_int")  # runtime, Pm(8)
# signatures are padded with never-matching codes to a multiple of this: fewer formulas to
# compile (k = 8..64 share one), for at most 2x the comparisons at k = 32 (per pair that is
# 64 vs 32 comparisons next to the ~2·D multiply-adds of the content and value terms)
K_MULTIPLE = 64


def _score(sig: bool) -> str:
    """KeOps formula of the masked logit l_ij (module doc); Factorize computes J and I once.

    One formula serves every score mode: the signature term is c_rbf·exp(−γΔ) +
    c_int·η·I/sqrt(max(|q||k|, 1)) with (c_rbf, c_int) = (1, 0) or (0, 1) — exact, since
    1·x + 0·y == x for finite y — and the content term β·qc·kc has β = 0 when absent.
    ``sig`` False (mode ``dot``) drops the signature term and its k comparisons.
    """
    p = {name: f"Elem(p,{i})" for i, name in enumerate(PARAMS)}
    score = f"({p['beta']}*(qc|kc))"
    if sig:
        j = f"(Sum(Equal(cq,ck))/{p['k']})"
        tot = "(sq+sk)"
        inter = f"(({j}/(IntCst(1)+{j}))*{tot})"
        rbf = f"Exp(-({p['gamma']}*ReLU({tot}-IntCst(2)*{inter})))"
        prod = "(sq*sk)"
        inorm = f"(({p['eta']}*{inter})/Sqrt(IfElse({prod}-IntCst(1),{prod},IntCst(1))))"
        term = f"(({p['c_rbf']}*{rbf})+({p['c_int']}*{inorm}))"
        score = f"(Factorize(Factorize({term},{inter}),{j})+{score})"
    return f"IfElse(tq-rk,{score}/{p['tau']},{p['neg']})"


_CACHE: dict[tuple, Genred] = {}


def _reduction(kind: str, sig: bool, k: int, D: int, Dv: int) -> tuple[Genred, list[str]]:
    """(Genred, argument names) for kind in fwd | bwd_i (dv, dkc over queries) | bwd_j (dqc)."""
    names = (["cq", "ck", "sq", "sk"] if sig else []) + ["tq", "rk", "qc", "kc", "v"]
    dims = {"cq": f"Vi({k})", "ck": f"Vj({k})", "sq": "Vi(1)", "sk": "Vj(1)", "tq": "Vi(1)", "rk": "Vj(1)"}
    dims.update(qc=f"Vi({D})", kc=f"Vj({D})", v=f"Vj({Dv})", lse="Vi(1)", g=f"Vi({Dv})", d="Vi(1)")
    logit = _score(sig)
    if kind == "fwd":
        formula, red, axis, extra = logit, "Max_SumShiftExpWeight", 1, {"formula2": "Concat(IntCst(1),v)"}
    else:
        names += ["lse", "g", "d"]
        prob = f"Exp({logit}-lse)"
        dl = f"({prob}*((g|v)-d))"
        formula, axis = (f"Concat({prob}*g,{dl}*qc)", 0) if kind == "bwd_i" else (f"{dl}*kc", 1)
        red, extra = "Sum", {}
    aliases = [f"{n}={dims[n]}" for n in names] + [f"p=Pm({len(PARAMS)})"]
    key = (formula, tuple(aliases), red, axis)
    if key not in _CACHE:
        _CACHE[key] = Genred(formula, aliases, reduction_op=red, axis=axis, **extra)
    return _CACHE[key], names


def _call(kind: str, ctxd: dict, **tensors) -> Tensor:
    red, names = _reduction(kind, ctxd["sig"], *ctxd["dims"])
    args = [tensors[n] for n in names] + [ctxd["params"]]
    return red(*args, backend="GPU" if ctxd["params"].is_cuda else "CPU")


class _KeopsAttend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qc, kc, v, data: dict, ctxd: dict):
        # data: cq, ck, sq, sk, tq, rk float32 [B, S, *]; hk float32 [B, S, 1] (has a key);
        # qc/kc [B, S, D] (zeros [B, S, 1] when the mode has no content term)
        out = _call("fwd", ctxd, **data, qc=qc, kc=kc, v=v)  # [B, S, 2 + Dv]: max, Σexp, Σexp·v
        s0 = out[..., 1:2]
        z = out[..., 2:] / s0
        lse = out[..., :1] + torch.log(s0)
        ctx.save_for_backward(qc, kc, v, z, lse)
        ctx.data, ctx.ctxd = data, ctxd
        return z * data["hk"]

    @staticmethod
    def backward(ctx, grad):
        qc, kc, v, z, lse = ctx.saved_tensors
        data, ctxd = ctx.data, ctx.ctxd
        g = (grad.float() * data["hk"]).contiguous()  # key-less queries: no gradient
        d = (g * z).sum(-1, keepdim=True).contiguous()
        t = dict(data, qc=qc, kc=kc, v=v, lse=lse.contiguous(), g=g, d=d)
        scale = ctxd["beta"] / ctxd["tau"]
        content = ctxd["content"]
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dqc = dkc = dv = None
        if need_v or (content and need_k):
            out = _call("bwd_i", ctxd, **t)  # [B, S, Dv + D]
            Dv = v.shape[-1]
            dv = out[..., :Dv] if need_v else None
            dkc = out[..., Dv:] * scale if content and need_k else None
        if content and need_q:
            dqc = _call("bwd_j", ctxd, **t) * scale
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
    """Z [B, S, Dv] (dtype of v, which must be float32): ``python.set_attend`` via KeOps."""
    sig_term, content = score_terms(score_mode, beta, qc, kc)
    tensors = [v] + ([qc, kc] if content else [])
    bad = sorted({str(t.dtype) for t in tensors if t.dtype != torch.float32})
    if bad:
        raise ValueError(f"keops backend computes in float32 only, got {', '.join(bad)}; available: fp32")
    B, S, k = sig.shape
    Dv = v.shape[-1]
    if S == 0:
        return v.new_zeros(B, S, Dv)
    threshold, rank = mask_ranks(end, valid, causal)
    data = {
        "tq": threshold.float()[..., None].contiguous(),
        "rk": rank.float()[..., None].contiguous(),
        "hk": has_allowed_key(end, valid, causal).float()[..., None],
    }
    # formula variants: with the signature term (every mode but dot; also dot with beta = 0,
    # whose constant score is the signature formula with both coefficients 0) or without it
    use_sig = sig_term is not None or not content
    kp = 0
    if use_sig:
        codes = signature_codes(sig).float()
        kp = -(-k // K_MULTIPLE) * K_MULTIPLE
        pad = (0, kp - k)  # padding codes -1 (queries) vs -2 (keys): never equal
        sz = size.float()[..., None].contiguous()
        data.update(
            cq=torch.nn.functional.pad(codes, pad, value=-1.0).contiguous(),
            ck=torch.nn.functional.pad(codes, pad, value=-2.0).contiguous(),
            sq=sz,
            sk=sz,
        )
    if content:
        q, kk = qc.contiguous(), kc.contiguous()
    else:  # no content term: a 1-wide zero dot product (beta = 0), whatever qc/kc were given
        q = kk = v.new_zeros(B, S, 1)
    c_rbf, c_int = {"rbf": (1.0, 0.0), "intersect": (0.0, 1.0), None: (0.0, 0.0)}[sig_term]
    beta_eff = float(beta) if content else 0.0
    values = dict(gamma=gamma, beta=beta_eff, eta=eta, tau=tau, k=float(k), neg=NEG, c_rbf=c_rbf, c_int=c_int)
    params = torch.tensor([[values[n] for n in PARAMS]], dtype=torch.float32, device=v.device)
    ctxd = dict(sig=use_sig, content=content, dims=(kp, q.shape[-1], Dv), params=params, beta=beta_eff, tau=tau)
    return _KeopsAttend.apply(q, kk, v.contiguous(), data, ctxd)
