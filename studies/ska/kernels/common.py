"""Inputs the streamed backends (keops, triton) share: exact signature codes, masks, modes.

Both streamed backends compute ``python.set_attend`` without the S×S score matrix. What they
need beyond the raw tensors is prepared here, once per call, in O(B·S·k) work:

* ``signature_codes``: each hash position's int64 MinHash values replaced by their dense rank
  among the S sets of the same sequence. Two sets have equal signatures at position i exactly
  when their ranks are equal, and the ranks are < S, so they are exact in float32 (keops
  computes on floats; S < 2^24) and fit int32 (triton).
* ``mask_ranks``: one "threshold" per query and one "rank" per key such that a key is allowed
  exactly when rank_k <= threshold_q (valid key, valid query and, if causal, end_k <= end_q).
* ``has_allowed_key``: queries with at least one allowed key; the others get Z = 0.
* ``score_terms``: which terms a score mode has (signature term kind, content term).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .python import _CONTENT, SCORE_MODES

FLOAT_EXACT = 1 << 24  # integers below this are exact in float32
KEY_OFF = FLOAT_EXACT  # rank of an invalid key: above every threshold
QUERY_OFF = -1  # threshold of an invalid query: below every rank


def score_terms(score_mode: str, beta: float, qc, kc) -> tuple[str | None, bool]:
    """(signature term: "rbf" | "intersect" | None, content term present) for a mode.

    Mirrors ``python.set_scores``: the content term exists iff the mode has one and beta != 0,
    and then qc and kc are required.
    """
    if score_mode not in SCORE_MODES:
        raise ValueError(f"unknown score_mode {score_mode!r}; available: {', '.join(SCORE_MODES)}")
    sig_term = None if score_mode == "dot" else ("rbf" if score_mode.startswith("delta") else "intersect")
    content = score_mode in _CONTENT and beta != 0
    if content and (qc is None or kc is None):
        raise ValueError(f"score_mode {score_mode!r} with beta != 0 needs qc and kc")
    return sig_term, content


def signature_codes(sig: Tensor) -> Tensor:
    """int32 [B, S, k]: rank of sig[b, s, i] among the distinct values of sig[b, :, i].

    Exact: codes are equal iff the signatures are (same sequence b, same hash position i).
    """
    B, S, k = sig.shape
    if S >= FLOAT_EXACT:
        raise ValueError(f"{S} sets per sequence: codes would not be exact in float32")
    if S == 0:
        return torch.zeros(B, S, k, dtype=torch.int32, device=sig.device)
    ordered, order = sig.sort(dim=1)  # [B, S, k]
    new = torch.ones_like(ordered, dtype=torch.int32)
    new[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).to(torch.int32)
    rank = new.cumsum(1, dtype=torch.int32) - 1
    return torch.empty_like(rank).scatter_(1, order, rank)


def mask_ranks(end: Tensor, valid: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """(threshold [B, S], rank [B, S]) int32: key k allowed for query q iff rank_k <= threshold_q."""
    if causal:
        if end.numel() and int(end.max()) >= FLOAT_EXACT - 1:
            raise ValueError(f"set ends up to {int(end.max())}: masks need ends < 2^24 - 1")
        base = end.to(torch.int32)
    else:
        base = torch.zeros_like(end, dtype=torch.int32)
    threshold = torch.where(valid, base, torch.full_like(base, QUERY_OFF))
    rank = torch.where(valid, base, torch.full_like(base, KEY_OFF))
    return threshold.contiguous(), rank.contiguous()


def has_allowed_key(end: Tensor, valid: Tensor, causal: bool) -> Tensor:
    """bool [B, S]: the query is valid and at least one key is allowed for it."""
    if causal:
        first_end = torch.where(valid, end, torch.full_like(end, torch.iinfo(end.dtype).max)).amin(-1, keepdim=True)
        return valid & (end >= first_end)
    return valid & valid.any(-1, keepdim=True)
