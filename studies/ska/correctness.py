"""How well MinHash estimates the symmetric difference Δ that SKA's kernel scores.

Random pairs of sets from a finite universe, with overlaps spread over [0, 1] so every
Jaccard regime is represented; the exact Δ = |A| + |B| − 2|A ∩ B| against the estimate
Δ̂ = max(0, |A| + |B| − 2Î), Î = Ĵ/(1+Ĵ)(|A|+|B|), from k-signatures (banks.py), the same
code path the model uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .banks import Bank, add_signatures, delta_from_signatures


def random_set_pairs(
    n_pairs: int, universe: int, min_size: int, max_size: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """Pairs (A, B) of distinct-id sets; the shared part is a uniform fraction of the smaller set."""
    if not 1 <= min_size <= max_size or 2 * max_size > universe:
        raise ValueError(f"need 1 <= min_size <= max_size <= universe/2, got {min_size}, {max_size}, {universe}")
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n_pairs):
        a, b = torch.randint(min_size, max_size + 1, (2,), generator=g).tolist()
        common = int(torch.rand((), generator=g) * (min(a, b) + 1))
        ids = torch.randperm(universe, generator=g)[: a + b - common]  # distinct ids
        pairs.append((ids[:a], torch.cat([ids[:common], ids[a:]])))
    return pairs


def pairs_bank(pairs: list[tuple[Tensor, Tensor]]) -> Bank:
    """The pairs as a CSR bank: one sequence of two sets per pair."""
    sets = [torch.sort(s).values for pair in pairs for s in pair]
    sizes = torch.tensor([len(s) for s in sets])
    zero = torch.zeros(1, dtype=torch.long)
    return Bank(
        values=torch.cat(sets),
        set_offsets=torch.cat([zero, sizes.cumsum(0)]),
        seq_offsets=torch.arange(0, 2 * len(pairs) + 1, 2),
        set_end=torch.ones(len(sets), dtype=torch.long),
        sizes=sizes,
        window=int(sizes.max()),
        stride=1,
    )


def delta_errors(k: int, pairs: list[tuple[Tensor, Tensor]], universe: int, hash_seed: int) -> dict[str, Tensor]:
    """Exact and estimated Jaccard and Δ for every pair, from k-signatures."""
    bank = add_signatures(pairs_bank(pairs), k, hash_seed, vocab_size=universe)
    sig, size = bank.signatures.view(len(pairs), 2, k), bank.sizes.view(len(pairs), 2).double()
    j_est, _, d_est = delta_from_signatures(sig[:, 0], sig[:, 1], size[:, 0], size[:, 1])
    inter = torch.tensor([float(torch.isin(a, b).sum()) for a, b in pairs], dtype=torch.float64)
    union = size.sum(1) - inter
    return {
        "jaccard": inter / union,
        "jaccard_est": j_est.double(),
        "delta": size.sum(1) - 2 * inter,
        "delta_est": d_est.double(),
    }


def summarize(errors: dict[str, Tensor]) -> dict[str, float]:
    """Mean, s.d. and max of the estimation errors (estimate − exact)."""
    out = {}
    for name in ("jaccard", "delta"):
        err = errors[f"{name}_est"] - errors[name]
        out |= {
            f"{name}_mean_err": err.mean().item(),
            f"{name}_sd_err": err.std().item(),
            f"{name}_max_abs_err": err.abs().max().item(),
            f"{name}_mean_abs_err": err.abs().mean().item(),
        }
    return out
