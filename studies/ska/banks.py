"""Window-set banks for set kernel attention: sets of distinct atom ids, MinHash, CSR storage.

A bank cuts every sequence into windows (starts 0, s, 2s, ... plus a last partial window, so
every position is covered) and keeps, per window, the SET of distinct atom ids in it. Sets
are stored flat (CSR): ``values`` holds each set's sorted distinct ids back to back,
``set_offsets`` cuts ``values`` into sets and ``seq_offsets`` cuts the sets into sequences.

MinHash signatures use h_i(x) = (a_i·π(x) + b_i) mod p with p = 2^61 - 1, computed exactly
in int64 by splitting the products (no wrap-around). π is a seeded nonlinear bijection of
[0, p) (``mix_ids``): the linear family alone is not min-wise independent on structured ids
(image atoms 2i+b form an arithmetic progression, and adjacent ViT windows, exact J = 1/3,
were estimated 0.29 however large k), while on mixed ids it behaves as on random ones.
sig_i(S) = min_{x in S} h_i(x); an empty set gets p - 1. They depend only on the atoms and
the hash seed, never on learned weights, so they are computed once and cached with the bank.

From two signatures: J^ = mean_i [sig_i(q) = sig_i(k)], I^ = J^/(1+J^)·(|q|+|k|) and
D^ = max(0, |q|+|k| - 2 I^) estimate Jaccard, intersection and symmetric-difference sizes.
Sizes are set sizes (distinct ids), never multiset counts, so the estimate is unbiased in J.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

P61 = (1 << 61) - 1  # Mersenne prime modulus of the MinHash family
_PAD = torch.iinfo(torch.int64).max  # sorts after every atom id
_FORMAT = 1  # bump when the saved tensor layout changes
_CHUNK = 1 << 22  # elements per temporary buffer in build_bank / add_signatures


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts 0, s, 2s, ... up to the first window that reaches ``length`` (may be partial)."""
    if window < 1 or stride < 1 or stride > window:
        raise ValueError(f"need 1 <= stride <= window, got window={window}, stride={stride}")
    if length <= 0:
        return []
    starts = [0]
    while starts[-1] + window < length:
        starts.append(starts[-1] + stride)
    return starts


def _ranges(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenation of arange(s, s + c) for each (s, c), vectorized."""
    total = int(counts.sum())
    first = torch.cumsum(counts, 0) - counts  # [n] position of each range in the output
    return torch.repeat_interleave(starts - first, counts) + torch.arange(total)


@dataclass
class PaddedBank:
    """Dense per-sequence view of a bank, what the model and kernels consume."""

    sig: Tensor  # int64 [B, S, k] (p-1 on padding)
    size: Tensor  # float32 [B, S] number of distinct atoms (0 on padding)
    end: Tensor  # int64 [B, S] exclusive end position of the set's window (0 on padding)
    valid: Tensor  # bool [B, S] real set (not padding)
    atoms: Tensor  # int64 [B, S, W] atom ids, W = window (0 where atom_mask is False)
    atom_mask: Tensor  # bool [B, S, W]


@dataclass
class Bank:
    """CSR window sets of a batch of sequences (all tensors on one device)."""

    values: Tensor  # int64 [nnz] sorted distinct atom ids of each set, back to back
    set_offsets: Tensor  # int64 [n_sets + 1]
    seq_offsets: Tensor  # int64 [n_seqs + 1]
    set_end: Tensor  # int64 [n_sets] exclusive end of each set's window in its sequence
    sizes: Tensor  # int64 [n_sets] distinct atoms per set
    window: int
    stride: int
    signatures: Tensor | None = None  # int64 [n_sets, k]

    @property
    def n_seqs(self) -> int:
        return self.seq_offsets.numel() - 1

    @property
    def n_sets(self) -> int:
        return self.set_offsets.numel() - 1

    def to(self, device) -> Bank:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Bank(**{n: v.to(device) if isinstance(v, Tensor) else v for n, v in moved.items()})

    def select(self, seq_indices: Tensor) -> Bank:
        """The bank of sequences ``seq_indices`` (in that order), offsets renumbered."""
        seq_indices = torch.as_tensor(seq_indices, dtype=torch.int64, device=self.values.device)
        n_per_seq = self.seq_offsets[seq_indices + 1] - self.seq_offsets[seq_indices]
        set_ids = _ranges(self.seq_offsets[seq_indices], n_per_seq)  # [n_sets']
        sizes = self.sizes[set_ids]
        value_ids = _ranges(self.set_offsets[set_ids], sizes)  # [nnz']
        zero = sizes.new_zeros(1)
        return replace(
            self,
            values=self.values[value_ids],
            set_offsets=torch.cat([zero, torch.cumsum(sizes, 0)]),
            seq_offsets=torch.cat([zero, torch.cumsum(n_per_seq, 0)]),
            set_end=self.set_end[set_ids],
            sizes=sizes,
            signatures=None if self.signatures is None else self.signatures[set_ids],
        )

    def padded(self) -> PaddedBank:
        """Dense [B, S, ...] tensors; S = most sets in any sequence, W = window."""
        if self.signatures is None:
            raise ValueError("bank has no signatures: call add_signatures first")
        dev, B = self.values.device, self.n_seqs
        n_per_seq = self.seq_offsets[1:] - self.seq_offsets[:-1]  # [B]
        S = int(n_per_seq.max()) if B > 0 else 0
        seq_of_set = torch.repeat_interleave(torch.arange(B, device=dev), n_per_seq)
        slot = torch.arange(self.n_sets, device=dev) - self.seq_offsets[seq_of_set]  # [n_sets]
        k = self.signatures.shape[1]
        sig = torch.full((B, S, k), P61 - 1, dtype=torch.int64, device=dev)
        sig[seq_of_set, slot] = self.signatures
        size = torch.zeros(B, S, dtype=torch.float32, device=dev)
        size[seq_of_set, slot] = self.sizes.float()
        end = torch.zeros(B, S, dtype=torch.int64, device=dev)
        end[seq_of_set, slot] = self.set_end
        valid = torch.zeros(B, S, dtype=torch.bool, device=dev)
        valid[seq_of_set, slot] = True
        # atoms: value j of set i goes to [seq_of_set[i], slot[i], j - set_offsets[i]]
        set_of_val = torch.repeat_interleave(torch.arange(self.n_sets, device=dev), self.sizes)
        pos = torch.arange(self.values.numel(), device=dev) - self.set_offsets[set_of_val]
        atoms = torch.zeros(B, S, self.window, dtype=torch.int64, device=dev)
        atom_mask = torch.zeros(B, S, self.window, dtype=torch.bool, device=dev)
        atoms[seq_of_set[set_of_val], slot[set_of_val], pos] = self.values
        atom_mask[seq_of_set[set_of_val], slot[set_of_val], pos] = True
        return PaddedBank(sig, size, end, valid, atoms, atom_mask)

    def save(self, path) -> None:
        """Tensor-only file (loadable with weights_only=True)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "signatures"}
        d["window"], d["stride"] = torch.tensor(self.window), torch.tensor(self.stride)
        d["format"] = torch.tensor(_FORMAT)
        if self.signatures is not None:
            d["signatures"] = self.signatures
        torch.save({n: v.cpu() for n, v in d.items()}, path)

    @classmethod
    def load(cls, path) -> Bank:
        d = torch.load(path, weights_only=True, map_location="cpu")
        if int(d.pop("format", -1)) != _FORMAT:
            raise ValueError(f"{path}: not a bank file of format {_FORMAT}")
        d["window"], d["stride"] = int(d["window"]), int(d["stride"])
        return cls(**d)


def build_bank(tokens: Tensor, window: int, stride: int) -> Bank:
    """Window sets of every row of ``tokens`` [N, L] (int, >= 0); no signatures yet."""
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32, torch.int16):
        raise ValueError("tokens must be an integer tensor [N, L]")
    if tokens.numel() and int(tokens.min()) < 0:
        raise ValueError("atom ids must be >= 0")
    N, L = tokens.shape
    starts = torch.tensor(window_starts(L, window, stride), dtype=torch.int64)  # [S]
    ends = torch.clamp(starts + window, max=L)  # [S]
    idx = starts[:, None] + torch.arange(window)  # [S, w]
    inside = idx < ends[:, None]  # [S, w]
    idx = idx.clamp(max=max(L - 1, 0))
    values, sizes = [], []
    rows = max(1, _CHUNK // max(starts.numel() * window, 1))  # sequences per [n, S, w] buffer
    for lo in range(0, N, rows):
        win = tokens[lo : lo + rows].to(torch.int64)[:, idx]  # [n, S, w]
        win = torch.where(inside, win, torch.full_like(win, _PAD)).sort(dim=-1).values
        new = torch.ones_like(win, dtype=torch.bool)
        new[..., 1:] = win[..., 1:] != win[..., :-1]
        keep = new & (win != _PAD)  # first copy of each real id
        values.append(win[keep])  # row-major: sequence, set, ascending id
        sizes.append(keep.sum(-1).reshape(-1))
    sizes_t = torch.cat(sizes) if sizes else torch.zeros(0, dtype=torch.int64)
    S = starts.numel()
    return Bank(
        values=torch.cat(values) if values else torch.zeros(0, dtype=torch.int64),
        set_offsets=torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(sizes_t, 0)]),
        seq_offsets=torch.arange(N + 1, dtype=torch.int64) * S,
        set_end=ends.repeat(N),
        sizes=sizes_t,
        window=window,
        stride=stride,
    )


def minhash_coefficients(k: int, seed: int) -> tuple[Tensor, Tensor]:
    """a_i in [1, p), b_i in [0, p) from Python's seeded Mersenne Twister (version-stable)."""
    rng = random.Random(seed)
    a = [rng.randrange(1, P61) for _ in range(k)]
    b = [rng.randrange(0, P61) for _ in range(k)]
    return torch.tensor(a, dtype=torch.int64), torch.tensor(b, dtype=torch.int64)


def mulmod_p61(a: Tensor, x: Tensor) -> Tensor:
    """(a·x) mod p exactly for int64 a, x in [0, p): 31/30-bit split, every partial < 2^63."""
    m31, m30 = (1 << 31) - 1, (1 << 30) - 1
    a0, a1 = a & m31, a >> 31  # a = a1·2^31 + a0, a1 < 2^30
    x0, x1 = x & m31, x >> 31
    hi = (2 * (a1 * x1)) % P61  # a1·x1·2^62, and 2^62 = 2 (mod p)
    mid = a1 * x0 + a0 * x1  # < 2^62, times 2^31 below
    mid = ((mid >> 30) + ((mid & m30) << 31)) % P61  # 2^61 = 1 (mod p)
    return (hi + mid + (a0 * x0) % P61) % P61  # sum of three values < p: no overflow


def hash_values(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """h(x) = (a·x + b) mod p, broadcasting; x in [0, p)."""
    return (mulmod_p61(a, x) + b) % P61


_MASK61 = (1 << 61) - 1  # = P61 as a bit mask: the low 61 bits
_MIX_MULT = (0xBF58476D1CE4E5B9 & _MASK61, 0x94D049BB133111EB & _MASK61)  # splitmix64's, cut to 61 bits (odd)
_MIX_SHIFT = (30, 27, 31)


def mix_keys(seed: int) -> tuple[int, int]:
    """The two 61-bit xor keys of ``mix_ids`` for a hash seed (own generator: a, b unchanged)."""
    rng = random.Random(f"ska-minhash-mix-{seed}")
    return rng.getrandbits(61), rng.getrandbits(61)


def _mulmod_2_61(m: int, x: Tensor) -> Tensor:
    """(m·x) mod 2^61 exactly for m, x in [0, 2^61): the m1·x1·2^62 term vanishes, no partial >= 2^63."""
    m31, m30 = (1 << 31) - 1, (1 << 30) - 1
    m0, m1 = m & m31, m >> 31
    x0, x1 = x & m31, x >> 31
    cross = (m0 * x1 + m1 * x0) & m30  # only its low 30 bits survive the shift by 31
    return (m0 * x0 + (cross << 31)) & _MASK61


def permute61(x: Tensor, keys: tuple[int, int]) -> Tensor:
    """A bijection of [0, 2^61): two keyed rounds of splitmix64's finalizer on 61-bit words.

    Each step is invertible (xor with a key, x ^= x >> s, multiplication by an odd constant
    modulo 2^61), so the composition is a permutation.
    """
    for key in keys:
        x = x ^ key
        x = x ^ (x >> _MIX_SHIFT[0])
        x = _mulmod_2_61(_MIX_MULT[0], x)
        x = x ^ (x >> _MIX_SHIFT[1])
        x = _mulmod_2_61(_MIX_MULT[1], x)
        x = x ^ (x >> _MIX_SHIFT[2])
    return x


def mix_ids(x: Tensor, seed: int) -> Tensor:
    """π(x): a seeded nonlinear bijection of [0, p), applied to atom ids before hashing.

    ``permute61`` permutes [0, 2^61) = [0, p) ∪ {p}; the one id it sends to p walks one more
    step (π(p) < p, since p is taken), so [0, p) maps onto itself one to one.
    """
    keys = mix_keys(seed)
    y = permute61(x, keys)
    return torch.where(y == P61, permute61(torch.full_like(y, P61), keys), y)


def add_signatures(bank: Bank, k: int, seed: int, vocab_size: int | None = None) -> Bank:
    """The bank with MinHash signatures [n_sets, k] of the mixed ids; empty sets get p - 1.

    ``vocab_size`` only checks the ids; the hash table covers the distinct ids of the bank.
    """
    a, b = minhash_coefficients(k, seed)
    top = int(bank.values.max()) if bank.values.numel() else -1
    V = top + 1 if vocab_size is None else vocab_size
    if top >= V:
        raise ValueError(f"atom id {top} >= vocab_size {V}")
    if top >= P61:
        raise ValueError(f"atom id {top} >= p = 2^61 - 1")
    dev = bank.values.device
    a, b, rows = a.to(dev), b.to(dev), max(1, _CHUNK // max(k, 1))
    ids, inverse = torch.unique(bank.values, return_inverse=True)  # hash each distinct id once
    mixed = mix_ids(ids, seed)[:, None]
    chunks = [hash_values(mixed[lo : lo + rows], a, b) for lo in range(0, ids.numel(), rows)]
    table = torch.cat(chunks) if chunks else torch.zeros(0, k, dtype=torch.int64, device=dev)  # [U, k]
    sig = torch.full((bank.n_sets, k), P61 - 1, dtype=torch.int64, device=dev)
    set_of_val = torch.repeat_interleave(torch.arange(bank.n_sets, device=dev), bank.sizes)
    for lo in range(0, bank.values.numel(), rows):  # segment min, a chunk of values at a time
        target = set_of_val[lo : lo + rows, None].expand(-1, k)
        sig.scatter_reduce_(0, target, table[inverse[lo : lo + rows]], "amin")
    return replace(bank, signatures=sig)


def jaccard_estimate(sig_a: Tensor, sig_b: Tensor) -> Tensor:
    """Fraction of equal signature positions (last dim), broadcasting."""
    return (sig_a == sig_b).float().mean(-1)


def intersection_and_delta(j: Tensor, size_q: Tensor, size_k: Tensor) -> tuple[Tensor, Tensor]:
    """I^ = J/(1+J)·(|q|+|k|) and D^ = max(0, |q|+|k| - 2 I^) from a Jaccard value."""
    total = size_q + size_k
    inter = j / (1.0 + j) * total
    return inter, torch.clamp(total - 2.0 * inter, min=0.0)


def delta_from_signatures(sig_q, sig_k, size_q, size_k) -> tuple[Tensor, Tensor, Tensor]:
    """(J^, I^, D^) for signature pairs; sizes are float set sizes."""
    j = jaccard_estimate(sig_q, sig_k)
    inter, delta = intersection_and_delta(j, size_q, size_k)
    return j, inter, delta


def symmetric_difference_size(a: Tensor, b: Tensor) -> int:
    """|set(a) xor set(b)| exactly (duplicates ignored)."""
    ua, ub = torch.unique(a), torch.unique(b)
    common = int(torch.isin(ua, ub).sum())
    return ua.numel() + ub.numel() - 2 * common


def exact_pairwise(pb: PaddedBank) -> tuple[Tensor, Tensor]:
    """Exact intersection and symmetric-difference sizes between all set pairs: [B, S, S]."""
    ids, inv = torch.unique(pb.atoms[pb.atom_mask], return_inverse=True)
    shape = (*pb.valid.shape, ids.numel())
    member = torch.zeros(shape, dtype=torch.float64, device=pb.atoms.device)  # [B, S, U]
    bi, si, _ = pb.atom_mask.nonzero(as_tuple=True)
    member[bi, si, inv] = 1.0
    inter = member @ member.transpose(1, 2)  # [B, S, S]
    size = member.sum(-1)  # [B, S]
    return inter, size[:, :, None] + size[:, None, :] - 2.0 * inter
