"""Reference SKA kernel in vectorized PyTorch: set-to-set attention over padded banks.

Every other backend (keops, triton) must compute this function: for query set q and key set
k of the same sequence,

    J^ = mean_i [sig_i(q) = sig_i(k)],  I^ = J^/(1+J^)·(|q|+|k|),  D^ = max(0, |q|+|k| - 2 I^)
    score = delta_rbf           exp(-gamma·D^)
            delta_plus_dot      exp(-gamma·D^) + beta·qc_q·kc_k
            intersect_norm      eta·I^ / sqrt(|q|·|k|)
            intersect_plus_dot  eta·I^ / sqrt(|q|·|k|) + beta·qc_q·kc_k
            dot                 beta·qc_q·kc_k
    w_qk = softmax_k(score / tau) over keys that are valid and (causal) end_k <= end_q
    Z_q = sum_k w_qk v_k;  a query with no allowed key (or an invalid query) gets Z_q = 0.

The score matrix is materialized ([B, S, S]); signature matches are counted in chunks of
hash positions so the [B, S, S, k] comparison never exists at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..banks import intersection_and_delta

SCORE_MODES = ("delta_rbf", "delta_plus_dot", "intersect_norm", "intersect_plus_dot", "dot")
_CONTENT = {"delta_plus_dot", "intersect_plus_dot", "dot"}  # modes with a beta·qc·kc term
_BUDGET = 1 << 24  # elements per chunk of the [B, S, S, kc] equality test


def signature_matches(sig: Tensor) -> Tensor:
    """Number of equal hash positions between every pair of sets: [B, S, k] -> [B, S, S]."""
    B, S, k = sig.shape
    step = max(1, _BUDGET // max(B * S * S, 1))
    count = torch.zeros(B, S, S, dtype=torch.int32, device=sig.device)
    for lo in range(0, k, step):  # integer counts: exact whatever the chunking
        part = sig[..., lo : lo + step]
        count += (part[:, :, None, :] == part[:, None, :, :]).sum(-1, dtype=torch.int32)
    return count


def allowed_keys(end: Tensor, valid: Tensor, causal: bool) -> Tensor:
    """Mask [B, S_q, S_k]: key valid, query valid and (causal) end_k <= end_q."""
    allowed = valid[:, None, :] & valid[:, :, None]
    if causal:
        allowed = allowed & (end[:, None, :] <= end[:, :, None])
    return allowed


def set_scores(sig, size, qc, kc, *, gamma, beta, eta, score_mode) -> Tensor:
    """Unmasked scores [B, S, S] in float32."""
    if score_mode not in SCORE_MODES:
        raise ValueError(f"unknown score_mode {score_mode!r}; available: {', '.join(SCORE_MODES)}")
    size = size.float()
    size_q, size_k = size[:, :, None], size[:, None, :]  # [B, S, 1], [B, 1, S]
    score = torch.zeros(sig.shape[0], sig.shape[1], sig.shape[1], device=sig.device)
    if score_mode != "dot":
        j = signature_matches(sig).float() / sig.shape[-1]  # [B, S, S]
        inter, delta = intersection_and_delta(j, size_q, size_k)
        if score_mode.startswith("delta"):
            score = torch.exp(-gamma * delta)
        else:  # sizes are counts, so clamping at 1 only touches empty sets (where I^ = 0)
            score = eta * inter / torch.sqrt(torch.clamp(size_q * size_k, min=1.0))
    if score_mode in _CONTENT and beta != 0:
        if qc is None or kc is None:
            raise ValueError(f"score_mode {score_mode!r} with beta != 0 needs qc and kc")
        score = score + beta * (qc.float() @ kc.float().transpose(1, 2))  # [B, S, S]
    return score


def set_attend(
    sig: Tensor,  # int64 [B, S, k]
    size: Tensor,  # float [B, S]
    end: Tensor,  # int64 [B, S]
    valid: Tensor,  # bool [B, S]
    qc: Tensor | None,  # float [B, S, D] or None
    kc: Tensor | None,  # float [B, S, D] or None
    v: Tensor,  # float [B, S, Dv]
    *,
    gamma: float,
    beta: float,
    tau: float,
    eta: float,
    score_mode: str,
    causal: bool,
) -> Tensor:
    """Z [B, S, Dv] (dtype of v): softmax-weighted values over allowed key sets."""
    score = set_scores(sig, size, qc, kc, gamma=gamma, beta=beta, eta=eta, score_mode=score_mode)
    allowed = allowed_keys(end, valid, causal)  # [B, S, S]
    logits = torch.where(allowed, score / tau, torch.full_like(score, float("-inf")))
    # a row with no allowed key would be softmax(all -inf) = NaN: give it zeros, then zero weights
    has_key = allowed.any(-1, keepdim=True)  # [B, S, 1]
    logits = torch.where(has_key, logits, torch.zeros_like(logits))
    w = torch.softmax(logits, dim=-1) * allowed  # [B, S, S]; masked entries exactly 0
    return (w @ v.float()).to(v.dtype)  # [B, S, Dv]
