"""The python SKA kernel against a naive loop, masking, and the backend registry."""

import math

import pytest
import torch

from studies.ska.banks import P61, add_signatures, build_bank
from studies.ska.kernels import BACKENDS, SCORE_MODES, get_backend, set_attend

KW = dict(gamma=0.3, beta=0.5, tau=0.7, eta=1.3)


def _inputs(seed=0, B=2, L=14, D=5, Dv=3, k=32):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 7, (B, L), generator=g)
    pb = add_signatures(build_bank(tokens, 4, 2), k=k, seed=seed, vocab_size=7).padded()
    S = pb.valid.shape[1]
    pb.valid[1, -2:] = False  # padding sets in the second sequence
    qc, kc = torch.randn(B, S, D, generator=g), torch.randn(B, S, D, generator=g)
    v = torch.randn(B, S, Dv, generator=g)
    return pb, qc, kc, v


def _naive(pb, qc, kc, v, *, gamma, beta, tau, eta, score_mode, causal):
    B, S, k = pb.sig.shape
    Z = torch.zeros(B, S, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        for q in range(S):
            keys = [
                j
                for j in range(S)
                if pb.valid[b, q] and pb.valid[b, j] and (not causal or pb.end[b, j] <= pb.end[b, q])
            ]
            scores = []
            for j in keys:
                J = sum(int(pb.sig[b, q, i] == pb.sig[b, j, i]) for i in range(k)) / k
                sq, sk = float(pb.size[b, q]), float(pb.size[b, j])
                inter = J / (1 + J) * (sq + sk)
                delta = max(0.0, sq + sk - 2 * inter)
                dot = beta * float(qc[b, q].double() @ kc[b, j].double())
                s = {
                    "delta_rbf": math.exp(-gamma * delta),
                    "delta_plus_dot": math.exp(-gamma * delta) + dot,
                    "intersect_norm": eta * inter / math.sqrt(sq * sk),
                    "intersect_plus_dot": eta * inter / math.sqrt(sq * sk) + dot,
                    "dot": dot,
                }[score_mode]
                scores.append(s / tau)
            if keys:
                w = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
                Z[b, q] = (w[:, None] * v[b, keys].double()).sum(0)
    return Z


@pytest.mark.parametrize("score_mode", SCORE_MODES)
@pytest.mark.parametrize("causal", [True, False])
def test_every_score_mode_matches_a_naive_loop(score_mode, causal):
    pb, qc, kc, v = _inputs()
    args = (pb.sig, pb.size, pb.end, pb.valid, qc, kc, v)
    got = set_attend(*args, **KW, score_mode=score_mode, causal=causal)
    want = _naive(pb, qc, kc, v, **KW, score_mode=score_mode, causal=causal)
    assert got.dtype == v.dtype
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_query_with_no_allowed_key_gets_zeros_not_nan():
    pb, qc, kc, v = _inputs()
    pb.valid[0] = False  # no key at all in sequence 0
    qc.requires_grad_(True), v.requires_grad_(True)
    Z = set_attend(
        pb.sig,
        pb.size,
        pb.end,
        pb.valid,
        qc,
        kc,
        v,
        **KW,
        score_mode="delta_plus_dot",
        causal=True,
    )
    assert torch.equal(Z[0], torch.zeros_like(Z[0])) and torch.equal(Z[1, -2:], torch.zeros(2, 3))
    Z.sum().backward()
    assert torch.isfinite(qc.grad).all() and torch.isfinite(v.grad).all()


def test_beta_zero_skips_content_and_equals_delta_rbf():
    pb, qc, kc, v = _inputs()
    base = (pb.sig, pb.size, pb.end, pb.valid)
    kw = dict(KW, beta=0.0)
    want = set_attend(*base, qc, kc, v, **kw, score_mode="delta_rbf", causal=True)
    got = set_attend(*base, None, None, v, **kw, score_mode="delta_plus_dot", causal=True)
    assert torch.equal(got, want)  # None projections are never touched when beta == 0


def test_causal_mask_ignores_keys_that_end_later():
    pb, qc, kc, v = _inputs()
    Z = set_attend(
        pb.sig,
        pb.size,
        pb.end,
        pb.valid,
        qc,
        kc,
        v,
        **KW,
        score_mode="delta_plus_dot",
        causal=True,
    )
    v2 = v.clone()
    v2[:, -1] += 100.0  # the last set ends after every other set
    qc2 = qc.clone()
    qc2[:, -1] -= 50.0
    Z2 = set_attend(
        pb.sig,
        pb.size,
        pb.end,
        pb.valid,
        qc2,
        kc,
        v2,
        **KW,
        score_mode="delta_plus_dot",
        causal=True,
    )
    assert torch.equal(Z[0, :-1], Z2[0, :-1])
    free = dict(KW, score_mode="delta_plus_dot", causal=False)  # the test can see a leak
    Zf = set_attend(pb.sig, pb.size, pb.end, pb.valid, qc, kc, v, **free)
    Zf2 = set_attend(pb.sig, pb.size, pb.end, pb.valid, qc2, kc, v2, **free)
    assert not torch.equal(Zf[0, :-1], Zf2[0, :-1])
    sig = pb.sig.clone()
    sig[:, -1] = P61 - 1
    Z3 = set_attend(sig, pb.size, pb.end, pb.valid, qc, kc, v, **KW, score_mode="delta_rbf", causal=True)
    Z4 = set_attend(pb.sig, pb.size, pb.end, pb.valid, qc, kc, v, **KW, score_mode="delta_rbf", causal=True)
    assert torch.equal(Z3[:, :-1], Z4[:, :-1])


@pytest.mark.parametrize("score_mode", SCORE_MODES)
def test_gradients_are_finite(score_mode):
    pb, qc, kc, v = _inputs()
    for t in (qc, kc, v):
        t.requires_grad_(True)
    Z = set_attend(pb.sig, pb.size, pb.end, pb.valid, qc, kc, v, **KW, score_mode=score_mode, causal=True)
    (Z**2).sum().backward()
    for t in (qc, kc, v):
        assert t.grad is None or torch.isfinite(t.grad).all()
    assert v.grad.abs().sum() > 0


def test_unknown_backend_and_score_mode_are_errors_naming_choices():
    assert "python" in BACKENDS
    with pytest.raises(ValueError, match="available: python"):
        get_backend("triton_not_here")
    pb, qc, kc, v = _inputs()
    with pytest.raises(ValueError, match="delta_rbf"):
        set_attend(pb.sig, pb.size, pb.end, pb.valid, qc, kc, v, **KW, score_mode="cosine", causal=True)
