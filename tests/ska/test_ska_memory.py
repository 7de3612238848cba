import pytest

from studies.ska.memory import Shape, estimate, fits, preset

BASE = Shape(
    batch=8, seq_len=2048, d_model=128, n_layers=4, vocab=8192, window=32, stride=16, minhash_k=64, router_topk=0
)


def test_set_count_matches_window_starts():
    from studies.ska.banks import window_starts

    for L, w, s in [(128, 32, 16), (130, 32, 16), (20, 32, 16), (2048, 64, 32)]:
        assert Shape(1, L, 8, 1, 10, w, s, 8, 0).n_sets == len(window_starts(L, w, s))


def test_plan_sanity_terms():
    est = estimate(BASE)
    S = BASE.n_sets
    assert est["signatures"] == 8 * S * 64 * 8  # N_sets · k · 8 bytes
    assert est["phi_pooling"] == 4 * 8 * S * 128 * 4 * 5


def test_streamed_backends_do_not_store_the_score_matrix():
    python = estimate(BASE)["set_scores"]
    keops = estimate(Shape(**{**BASE.__dict__, "backend": "keops"}))["set_scores"]
    assert keops < python / 10


def test_preset_picks_the_largest_bank_that_fits_and_refuses_when_nothing_does():
    roomy = preset(BASE, budget=10**12)
    assert (roomy.window, roomy.minhash_k, roomy.router_topk) == (64, 256, 0)
    total = sum(estimate(BASE).values())
    chosen = preset(BASE, budget=total)
    assert fits(chosen, total) and chosen.window >= 32
    smaller = preset(BASE, budget=total // 3)
    assert smaller is None or sum(estimate(smaller).values()) <= total // 3
    assert preset(BASE, budget=1000) is None


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_halves_activation_terms(precision):
    half = estimate(Shape(**{**BASE.__dict__, "precision": precision}))
    assert half["activations"] * 2 == estimate(BASE)["activations"]
