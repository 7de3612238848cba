"""How well MinHash estimates the symmetric difference Δ that SKA's kernel scores.

Three sources of set pairs (``SET_SOURCES``): ``random`` pairs from a finite universe, with
overlaps spread over [0, 1] so every Jaccard regime is represented; and the real banks' sets:
``lm_windows``, windows of a whitespace-tokenized slice of the pydoc text, and
``image_windows``, windows of the procedural images' patch atoms 2i + b, where a linear hash
family alone is biased. Window pairs are half adjacent (overlapping) windows, half windows at
least two starts apart. The exact Δ = |A| + |B| − 2|A ∩ B| against the estimate
Δ̂ = max(0, |A| + |B| − 2Î), Î = Ĵ/(1+Ĵ)(|A|+|B|), from k-signatures (banks.py), the same
code path the model uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .banks import Bank, add_signatures, build_bank, delta_from_signatures

SET_SOURCES = ("random", "lm_windows", "image_windows")
WINDOWS_PER_SEQUENCE = 8  # length of each token/atom sequence the window pairs are cut from, in windows


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


def pydoc_word_ids(n_seqs: int, length: int, seed: int) -> Tensor:
    """[n_seqs, length] word ids of seeded random slices of the pydoc topics' text.

    Words are whitespace-separated strings, numbered in order of first appearance over the
    topics sorted by key: a real text's id statistics (frequent words repeat within a window)
    without the tokenizer stage.
    """
    from pydoc_data.topics import topics

    vocab: dict[str, int] = {}
    words = [vocab.setdefault(w, len(vocab)) for key in sorted(topics) for w in topics[key].split()]
    stream = torch.tensor(words)
    if stream.numel() < length:
        raise ValueError(f"pydoc text has {stream.numel()} words, fewer than one sequence of {length}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - length + 1, (n_seqs,), generator=g)
    return stream[starts[:, None] + torch.arange(length)]


def image_atom_ids(n_images: int, patch: int, seed: int) -> Tensor:
    """[n_images, n_patches] atom ids 2·patch_index + bright bit of procedural images, as ska_vit."""
    from studies.data.images import make_images

    from .vit import patch_atoms

    return patch_atoms(make_images(n_images, seed)[0], patch, threshold=0.5)


def window_pairs(tokens: Tensor, window: int, stride: int, seed: int) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """One pair of window sets per sequence: even rows adjacent windows, odd rows two starts or more apart.

    Returns the pairs and a bool [n] marking the adjacent ones.
    """
    bank = build_bank(tokens, window, stride)
    S = bank.n_sets // bank.n_seqs
    if S < 3:
        raise ValueError(f"sequences of {tokens.shape[1]} give {S} windows of {window}/{stride}; need >= 3")
    g = torch.Generator().manual_seed(seed)
    adjacent = torch.arange(bank.n_seqs) % 2 == 0
    u = torch.rand(2, bank.n_seqs, generator=g, dtype=torch.float64)
    a = torch.where(adjacent, u[0] * (S - 1), u[0] * (S - 2)).long()  # adjacent: a <= S-2; far: a <= S-3
    b = torch.where(adjacent, a + 1, a + 2 + (u[1] * (S - 2 - a)).long())  # far: a+2 <= b <= S-1
    sets = lambda j: bank.values[bank.set_offsets[j] : bank.set_offsets[j + 1]]  # noqa: E731
    base = bank.seq_offsets[:-1]
    pairs = [(sets(int(base[n] + a[n])), sets(int(base[n] + b[n]))) for n in range(bank.n_seqs)]
    return pairs, adjacent


def source_pairs(p: dict) -> tuple[list[tuple[Tensor, Tensor]], Tensor, int | None]:
    """(pairs, adjacent flags, universe) of ``p["set_source"]``; universe None: the ids' own range."""
    source, n, seed = p["set_source"], p["n_pairs"], p["data_seed"]
    if source == "random":
        pairs = random_set_pairs(n, p["universe"], p["set_size_min"], p["set_size_max"], seed)
        return pairs, torch.zeros(n, dtype=torch.bool), p["universe"]
    if source == "lm_windows":
        tokens = pydoc_word_ids(n, WINDOWS_PER_SEQUENCE * p["stride"] + p["window"], seed)
    elif source == "image_windows":
        tokens = image_atom_ids(n, p["patch"], seed)
    else:
        raise ValueError(f"set_source {source!r} unknown; choose one of {', '.join(SET_SOURCES)}")
    return (*window_pairs(tokens, p["window"], p["stride"], seed), None)


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


def delta_errors(k: int, pairs: list[tuple[Tensor, Tensor]], universe: int | None, hash_seed: int) -> dict[str, Tensor]:
    """Exact and estimated Jaccard and Δ for every pair, from k-signatures (ids < ``universe``)."""
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


def summarize(errors: dict[str, Tensor], adjacent: Tensor | None = None) -> dict[str, float]:
    """Mean (bias), s.d. and max of the estimation errors (estimate − exact).

    With ``adjacent`` flags, also the bias and s.d. over the adjacent window pairs alone
    (where structured ids showed their bias) and the mean exact Jaccard of all pairs.
    """
    out = {"n_pairs": len(errors["jaccard"]), "jaccard_mean": errors["jaccard"].mean().item()}
    for name in ("jaccard", "delta"):
        err = errors[f"{name}_est"] - errors[name]
        out |= {
            f"{name}_mean_err": err.mean().item(),
            f"{name}_sd_err": err.std().item(),
            f"{name}_max_abs_err": err.abs().max().item(),
            f"{name}_mean_abs_err": err.abs().mean().item(),
        }
        if adjacent is not None and adjacent.any():
            out |= {
                f"{name}_mean_err_adjacent": err[adjacent].mean().item(),
                f"{name}_sd_err_adjacent": err[adjacent].std().item(),
            }
    return out
