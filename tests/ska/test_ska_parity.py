from studies.ska.parity import TOLERANCES, compare, within_tolerance

SHAPE = dict(B=2, L=64, D=8, k=16, window=8, stride=4, score_mode="delta_plus_dot", causal=True, seed=0)


def test_the_reference_against_itself_is_exact():
    r = compare("python", "fp32", **SHAPE)
    assert r["finite"] and r["z_max_abs_err"] == 0.0 and r["grad_v_max_abs_err"] == 0.0
    assert r["grad_qc_norm_ratio"] == 1.0
    assert within_tolerance(r, "fp32")


def test_bf16_error_is_small_but_measured_and_within_the_shared_tolerance():
    r = compare("python", "bf16", **SHAPE)
    tol = TOLERANCES["bf16"]
    assert 0.0 < r["z_max_abs_err"] < tol["z_max_abs_err"]
    assert abs(r["grad_kc_norm_ratio"] - 1.0) < tol["grad_norm_ratio_dev"]
    assert within_tolerance(r, "bf16")


def test_a_result_outside_the_tolerance_fails_it():
    """The bf16 run's numbers are far outside fp32's 1e-5: the report must say fail."""
    r = compare("python", "bf16", **SHAPE)
    assert not within_tolerance(r, "fp32")
    assert not within_tolerance({**r, "grad_v_norm_ratio": 1.05}, "bf16")
    assert not within_tolerance({**r, "finite": False}, "bf16")
