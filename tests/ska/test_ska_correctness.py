import pytest
import torch

from studies.ska.correctness import (
    delta_errors,
    pydoc_word_ids,
    random_set_pairs,
    source_pairs,
    summarize,
    window_pairs,
)


def test_pairs_are_sets_with_the_requested_sizes():
    for a, b in random_set_pairs(50, universe=200, min_size=5, max_size=20, seed=0):
        assert 5 <= len(a) <= 20 and 5 <= len(b) <= 20
        assert len(torch.unique(a)) == len(a) and len(torch.unique(b)) == len(b)


def test_exact_delta_is_the_symmetric_difference():
    pairs = [(torch.tensor([1, 2, 3]), torch.tensor([2, 3, 4, 5])), (torch.tensor([7]), torch.tensor([7]))]
    errors = delta_errors(16, pairs, universe=10, hash_seed=0)
    assert errors["delta"].tolist() == [3.0, 0.0]
    assert errors["jaccard"].tolist() == [0.4, 1.0]
    assert errors["delta_est"][1] == 0.0  # identical sets: estimated exactly


def test_estimation_error_shrinks_with_k():
    pairs = random_set_pairs(400, universe=1000, min_size=10, max_size=60, seed=1)
    sd = [summarize(delta_errors(k, pairs, 1000, hash_seed=0))["jaccard_sd_err"] for k in (16, 64, 256)]
    assert sd[0] > sd[1] > sd[2]
    assert abs(summarize(delta_errors(256, pairs, 1000, 0))["jaccard_mean_err"]) < 0.01
    assert sd[2] < 0.035  # ≈ sqrt(J(1-J)/k) ≤ 0.5/16


def _params(source, **kw):
    base = dict(set_source=source, n_pairs=40, data_seed=0, universe=200, set_size_min=5, set_size_max=20)
    return {**base, "window": 8, "stride": 4, "patch": 4, **kw}


def test_image_window_pairs_overlap_by_half_when_adjacent_and_not_at_all_when_far():
    pairs, adjacent, universe = source_pairs(_params("image_windows"))
    assert universe is None and len(pairs) == 40 and adjacent.tolist() == [i % 2 == 0 for i in range(40)]
    errors = delta_errors(64, pairs, universe, hash_seed=0)
    # 64 patches, window 8 stride 4: all windows full; neighbours share 4 of 8 patches (J = 4/12)
    assert torch.allclose(errors["jaccard"][adjacent], torch.tensor(1 / 3, dtype=torch.float64))
    assert (errors["jaccard"][~adjacent] == 0).all()  # ids carry the patch index: far windows share none
    for a, b in pairs:
        assert len(a) == len(b) == 8 and (a // 2).unique().numel() == 8  # one atom per patch


def test_lm_window_pairs_come_from_pydoc_words_and_far_pairs_do_not_overlap_in_position():
    ids = pydoc_word_ids(3, 50, seed=1)
    assert ids.shape == (3, 50) and torch.equal(ids, pydoc_word_ids(3, 50, seed=1))
    assert ids.unique().numel() > 20  # real words, not one repeated id
    pairs, adjacent = window_pairs(torch.arange(40)[None].repeat(6, 1), 8, 4, seed=0)
    for (a, b), near in zip(pairs, adjacent, strict=True):  # distinct ids = positions: overlap reveals the gap
        shared = int(torch.isin(a, b).sum())
        assert shared == (4 if near else 0)


def test_unknown_set_source_names_the_choices():
    with pytest.raises(ValueError, match="random, lm_windows, image_windows"):
        source_pairs(_params("audio"))


def test_minhash_is_unbiased_on_image_windows_at_k256():
    # the linear hash family alone estimated these adjacent windows' J = 1/3 as ≈ 0.29
    pairs, adjacent, _ = source_pairs(_params("image_windows", n_pairs=600))
    s = summarize(delta_errors(256, pairs, None, hash_seed=0), adjacent)
    assert s["n_pairs"] == 600 and abs(s["jaccard_mean_err_adjacent"]) < 0.01  # s.e. 0.0017 over 300 pairs
    assert abs(s["jaccard_mean_err"]) < 0.01 and s["jaccard_sd_err_adjacent"] < 0.04  # sqrt(J(1-J)/256) = 0.029
