from studies.ska.parity import compare

SHAPE = dict(B=2, L=64, D=8, k=16, window=8, stride=4, score_mode="delta_plus_dot", causal=True, seed=0)


def test_the_reference_against_itself_is_exact():
    r = compare("python", "fp32", **SHAPE)
    assert r["finite"] and r["z_max_abs_err"] == 0.0 and r["grad_v_max_abs_err"] == 0.0
    assert r["grad_qc_norm_ratio"] == 1.0


def test_bf16_error_is_small_but_measured():
    r = compare("python", "bf16", **SHAPE)
    assert 0.0 < r["z_max_abs_err"] < 0.05
    assert abs(r["grad_kc_norm_ratio"] - 1.0) < 0.02
