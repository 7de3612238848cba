"""Fixed-length language-modelling examples from a token stream."""

from __future__ import annotations

import torch
from torch import Tensor


def chunk_tokens(ids: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows of seq_len + 1 tokens → (inputs, targets), each [N, seq_len].

    Windows step by seq_len, so every token after the first is predicted exactly once;
    the ragged tail is dropped. targets[i, t] = inputs[i, t + 1] (the next token).
    """
    ids = ids.long()
    n = (ids.numel() - 1) // seq_len
    if n < 1:
        raise ValueError(f"{ids.numel()} tokens are too few for one sequence of {seq_len} + 1")
    starts = torch.arange(n) * seq_len
    windows = ids[starts[:, None] + torch.arange(seq_len + 1)]  # [N, L + 1]
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
