import torch

from studies.ska.correctness import delta_errors, random_set_pairs, summarize


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
