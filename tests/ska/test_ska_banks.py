"""Window sets, CSR storage and MinHash of studies.ska.banks."""

import random

import numpy as np
import pytest
import torch
from torch import Tensor

from studies.ska.banks import (
    P61,
    Bank,
    add_signatures,
    build_bank,
    delta_from_signatures,
    exact_pairwise,
    hash_values,
    jaccard_estimate,
    minhash_coefficients,
    mix_ids,
    mix_keys,
    permute61,
    symmetric_difference_size,
    window_starts,
)


@pytest.mark.parametrize("length", [1, 3, 4, 5, 9, 10, 11, 17])
@pytest.mark.parametrize("window,stride", [(4, 2), (4, 4), (3, 1), (5, 3)])
def test_windows_cover_every_position_once_per_start(length, window, stride):
    starts = window_starts(length, window, stride)
    assert starts == sorted(set(starts)) and starts[0] == 0
    covered = set()
    for s in starts:
        covered |= set(range(s, min(s + window, length)))
    assert covered == set(range(length))
    assert min(starts[-1] + window, length) == length  # last window reaches the end
    assert all(s + window < length for s in starts[:-1])  # only the last one may be partial


def test_window_starts_rejects_gaps():
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 2, 3)


def test_bank_sets_are_sorted_distinct_window_contents():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 6, (3, 11), generator=g)
    bank = build_bank(tokens, window=4, stride=2)
    starts = window_starts(11, 4, 2)
    assert bank.n_sets == 3 * len(starts)
    for n in range(3):
        for i, s in enumerate(starts):
            j = int(bank.seq_offsets[n]) + i
            vals = bank.values[bank.set_offsets[j] : bank.set_offsets[j + 1]].tolist()
            assert vals == sorted(set(tokens[n, s : s + 4].tolist()))
            assert int(bank.sizes[j]) == len(vals)
            assert int(bank.set_end[j]) == min(s + 4, 11)


def _bank(seed=0, n=5, length=13, k=16):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 9, (n, length), generator=g)
    return tokens, add_signatures(build_bank(tokens, 4, 3), k=k, seed=1, vocab_size=9)


def test_select_round_trips_against_building_from_the_selected_rows():
    tokens, bank = _bank()
    idx = torch.tensor([3, 0, 3])
    want = add_signatures(build_bank(tokens[idx], 4, 3), k=16, seed=1, vocab_size=9)
    got = bank.select(idx)
    for name in ("values", "set_offsets", "seq_offsets", "set_end", "sizes", "signatures"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_save_load_round_trip_is_tensor_only(tmp_path):
    _, bank = _bank()
    bank.save(tmp_path / "bank.pt")
    back = Bank.load(tmp_path / "bank.pt")  # loads with weights_only=True
    assert (back.window, back.stride) == (bank.window, bank.stride)
    for name in ("values", "set_offsets", "seq_offsets", "set_end", "sizes", "signatures"):
        assert torch.equal(getattr(back, name), getattr(bank, name)), name


def test_padded_view_matches_csr():
    _, bank = _bank()
    pb = bank.padded()
    B, S, W = pb.atoms.shape
    assert (B, W) == (5, 4) and pb.valid.all()
    assert torch.equal(pb.atom_mask.sum(-1).float(), pb.size)
    assert torch.equal(pb.atoms[pb.atom_mask], bank.values)
    assert torch.equal(pb.sig.reshape(-1, 16), bank.signatures)


def test_hashes_are_exact_against_python_big_ints():
    a, b = minhash_coefficients(8, seed=3)
    xs = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**40 + 7, P61 - 2, P61 - 1]
    extra_a = torch.tensor([P61 - 1, 2**60 + 12345, 1])
    extra_b = torch.tensor([P61 - 1, 0, 5])
    a, b = torch.cat([a, extra_a]), torch.cat([b, extra_b])
    got = hash_values(torch.tensor(xs)[:, None], a[None, :], b[None, :])
    for i, x in enumerate(xs):
        for j in range(a.numel()):
            assert int(got[i, j]) == (int(a[j]) * x + int(b[j])) % P61


def test_coefficients_are_seeded_in_range_and_pinned():
    a, b = minhash_coefficients(64, seed=7)
    a2, b2 = minhash_coefficients(64, seed=7)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert int(a.min()) >= 1 and int(a.max()) < P61 and int(b.min()) >= 0 and int(b.max()) < P61
    assert not torch.equal(a, minhash_coefficients(64, seed=8)[0])
    rng = random.Random(7)  # the documented generator: a changed one invalidates caches
    assert int(a[0]) == rng.randrange(1, P61)


def test_signatures_are_set_minima_and_empty_is_p_minus_1():
    tokens, bank = _bank(k=8)
    a, b = minhash_coefficients(8, seed=1)
    for j in (0, 4, 9):
        vals = bank.values[bank.set_offsets[j] : bank.set_offsets[j + 1]]
        want = hash_values(mix_ids(vals, seed=1)[:, None], a, b).min(0).values
        assert torch.equal(bank.signatures[j], want)
    empty = Bank(
        values=torch.zeros(0, dtype=torch.int64),
        set_offsets=torch.zeros(2, dtype=torch.int64),
        seq_offsets=torch.tensor([0, 1]),
        set_end=torch.tensor([0]),
        sizes=torch.zeros(1, dtype=torch.int64),
        window=4,
        stride=2,
    )
    assert (add_signatures(empty, 8, 1, vocab_size=4).signatures == P61 - 1).all()


def test_jaccard_estimate_is_unbiased_at_k256():
    g = torch.Generator().manual_seed(0)
    rows, true = [], []
    for _ in range(100):  # pairs of size-20 sets sharing o ids: J = o / (40 - o)
        ids = torch.randperm(10_000, generator=g)[:40]
        o = int(torch.randint(0, 21, (1,), generator=g))
        rows += [ids[:20], torch.cat([ids[:o], ids[20 : 40 - o]])]
        true.append(o / (40 - o))
    bank = add_signatures(build_bank(torch.stack(rows), 20, 20), k=256, seed=5, vocab_size=10_000)
    j = jaccard_estimate(bank.signatures[0::2], bank.signatures[1::2])  # [100]
    err = j - torch.tensor(true)
    assert abs(float(err.mean())) < 0.01 and float(err.std()) < 0.05


M61 = (1 << 61) - 1
MULTS = (0xBF58476D1CE4E5B9 & M61, 0x94D049BB133111EB & M61)


def _unshift(y: int, s: int) -> int:
    """Inverse of x -> x ^ (x >> s) on 61-bit words."""
    x = y
    for _ in range(61 // s + 1):
        x = y ^ (x >> s)
    return x


def _invert61(y: int, keys) -> int:
    """permute61^-1 in Python integers: undo each step of each round in reverse."""
    for key in reversed(keys):
        y = _unshift(y, 31)
        y = y * pow(MULTS[1], -1, 1 << 61) & M61
        y = _unshift(y, 27)
        y = y * pow(MULTS[0], -1, 1 << 61) & M61
        y = _unshift(y, 30)
        y ^= key
    return y


def test_permute61_inverts_exactly_so_it_is_a_bijection():
    keys = mix_keys(3)
    xs = [0, 1, 2, 127, 2**31 - 1, 2**31, 2**60 + 5, P61 - 1, P61]
    ys = permute61(torch.tensor(xs), keys).tolist()
    assert all(0 <= y <= M61 for y in ys)
    assert [_invert61(y, keys) for y in ys] == xs


def test_mix_ids_maps_ids_below_p_one_to_one_below_p():
    keys = mix_keys(3)
    ids = torch.cat([torch.arange(1 << 20), torch.arange(P61 - (1 << 16), P61)])
    out = mix_ids(ids, seed=3)
    assert int(out.min()) >= 0 and int(out.max()) < P61
    assert torch.unique(out).numel() == ids.numel()  # no two ids collide
    # the one id that permute61 sends to p is walked on to permute61(p), which no other id takes
    walker = _invert61(P61, keys)
    assert walker < P61
    assert int(mix_ids(torch.tensor([walker]), seed=3)) == int(permute61(torch.tensor([P61]), keys))
    assert not torch.equal(out[:100], mix_ids(ids[:100], seed=4))  # the seed changes π


def _adjacent_window_bias(atoms: Tensor, k: int, seeds) -> tuple[float, Tensor]:
    """Mean (estimated − exact) Jaccard over every adjacent full-window pair, over hash seeds."""
    errs = []
    for seed in seeds:
        pb = add_signatures(build_bank(atoms, 8, 4), k=k, seed=seed).padded()
        inter, _ = exact_pairwise(pb)
        full = pb.size[:, :-1] == 8  # full windows only: the last one may be partial
        i = torch.arange(pb.size.shape[1] - 1)
        size = pb.size.double()
        exact = inter[:, i, i + 1] / (size[:, :-1] + size[:, 1:] - inter[:, i, i + 1])
        est = jaccard_estimate(pb.sig[:, :-1], pb.sig[:, 1:]).double()
        errs.append((est - exact)[full & (pb.size[:, 1:] == 8)])
    err = torch.cat(errs)
    return float(err.mean()), err


def test_minhash_is_unbiased_on_adjacent_image_windows_and_random_ids():
    # image atoms 2i + b (an arithmetic progression): the linear family alone gave -0.045 here
    g = torch.Generator().manual_seed(0)
    n, L, k, seeds = 32, 64, 512, range(4)
    image = 2 * torch.arange(L) + torch.randint(0, 2, (n, L), generator=g)
    bias, err = _adjacent_window_bias(image, k, seeds)
    # 32·14·4 = 1792 pairs, each of s.d. ≈ sqrt(J(1-J)/k) = 0.021: the mean's s.e. is 0.0005
    assert err.numel() == n * 14 * 4 and abs(bias) < 0.01, bias
    assert float(err.std()) < 0.03
    # distinct ids drawn from [0, 2^30) (numpy draws without replacement without permuting it all)
    random_ids = torch.as_tensor(np.random.default_rng(0).choice(1 << 30, n * L, replace=False)).reshape(n, L)
    bias, _ = _adjacent_window_bias(random_ids, k, seeds)
    assert abs(bias) < 0.01, bias


def test_identical_sets_have_zero_delta():
    bank = add_signatures(build_bank(torch.tensor([[4, 2, 9, 2], [9, 4, 4, 2]]), 4, 4), 64, 0)
    size = bank.sizes.float()
    j, inter, delta = delta_from_signatures(bank.signatures[0], bank.signatures[1], size[0], size[1])
    assert float(j) == 1.0 and float(inter) == 3.0 and float(delta) == 0.0


def test_multiset_example_uses_set_sizes():
    # the source scored {1,1,1,2} vs {1,2,3,3} with multiset sizes (D = 1.94); as sets
    # {1,2} vs {1,2,3} the symmetric difference is exactly 1
    tokens = torch.tensor([[1, 1, 1, 2], [1, 2, 3, 3]])
    assert symmetric_difference_size(tokens[0], tokens[1]) == 1
    bank = add_signatures(build_bank(tokens, 4, 4), k=256, seed=0, vocab_size=4)
    assert bank.sizes.tolist() == [2, 3]
    size = bank.sizes.float()
    _, _, delta = delta_from_signatures(bank.signatures[0], bank.signatures[1], size[0], size[1])
    assert abs(float(delta) - 1.0) < 0.4
    one_row = add_signatures(build_bank(tokens.reshape(1, 8), 4, 4), k=4, seed=0)
    _, exact = exact_pairwise(one_row.padded())  # [1, 2, 2]
    assert exact[0, 0, 1] == 1.0


def test_chunked_building_and_hashing_match_one_shot(monkeypatch):
    tokens, bank = _bank(n=7)
    monkeypatch.setattr("studies.ska.banks._CHUNK", 40)  # forces many small chunks
    small = add_signatures(build_bank(tokens, 4, 3), k=16, seed=1, vocab_size=9)
    for name in ("values", "set_offsets", "sizes", "signatures"):
        assert torch.equal(getattr(small, name), getattr(bank, name)), name
