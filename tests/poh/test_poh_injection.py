"""Feature-injection modes, alone and inside a reasoning module."""

import math

import pytest
import torch

from studies.poh.injection import INJECTION_MODES, alpha_gate, make_injection
from studies.poh.reasoning import ReasoningModule

B, S, D, DC, H = 2, 9, 16, 8, 4


def _inputs():
    torch.manual_seed(0)
    alpha = torch.softmax(torch.randn(B, H), -1)
    return torch.randn(B, S, D), torch.randn(B, DC), alpha


@pytest.mark.parametrize("mode", INJECTION_MODES)
@pytest.mark.parametrize("routing_point", ["pre_proj", "post_proj"])
def test_every_mode_keeps_shapes_in_a_reasoning_module(mode, routing_point):
    torch.manual_seed(0)
    mod = ReasoningModule(D, H, 32, 2, injection=mode, routing_point=routing_point, d_ctrl=DC)
    z, u = torch.randn(B, S, D), torch.randn(B, S, D)
    state = mod.init_state(B, z)
    out, state, alpha, ent = mod(z, u, state)
    assert out.shape == (B, S, D)  # depth_token's extra token is dropped again
    assert alpha.shape == (1, B, H) and ent.shape == (1, B)
    out.sum().backward()


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_injection_output_shapes(mode):
    x, r, alpha = _inputs()
    inj = make_injection(mode, D, DC)
    y, memory = inj(x, r, alpha, None)
    assert y.shape == (B, S + int(mode == "depth_token"), D)
    assert (memory is not None) == (mode == "cross_attn")


def test_film_is_exactly_identity_at_init():
    x, r, alpha = _inputs()
    y, _ = make_injection("film", D, DC)(x, r, alpha, None)
    assert torch.equal(y, x)


def test_depth_token_is_token_zero_and_removed_after_layers():
    x, r, alpha = _inputs()
    inj = make_injection("depth_token", D, DC)
    y, _ = inj(x, r, alpha, None)
    assert torch.equal(y[:, 1:], x)
    assert torch.allclose(y[:, 0], inj.ln(inj.proj(r)))


def test_cross_attn_memory_never_exceeds_memory_size():
    x, r, alpha = _inputs()
    inj = make_injection("cross_attn", D, DC, memory_size=5, memory_heads=4)
    memory, sizes = None, []
    for _ in range(12):
        _, memory = inj(x, torch.randn(B, DC), alpha, memory)
        sizes.append(memory.shape[1])
    assert sizes == [1, 2, 3, 4, 5] + [5] * 7
    newest = inj.proj(r).unsqueeze(1)
    _, memory = inj(x, r, alpha, memory)
    assert torch.allclose(memory[:, -1:], newest)  # FIFO: newest last, oldest dropped


def test_cross_attn_memory_is_capped_across_reasoning_calls():
    mod = ReasoningModule(D, H, 32, 1, injection="cross_attn", memory_size=3)
    z = torch.randn(B, S, D)
    state = mod.init_state(B, z)
    for _ in range(10):
        z, state, _, _ = mod(z, None, state)
        assert state.memory.shape[1] <= 3
    assert state.memory.shape == (B, 3, D)


def test_entropy_gate_prefers_confident_routing():
    one_hot, uniform = torch.eye(8)[:1], torch.full((1, 8), 1 / 8)
    assert alpha_gate(one_hot, "entropy").item() > alpha_gate(uniform, "entropy").item()
    assert alpha_gate(one_hot, "entropy").item() == pytest.approx(1.0)
    assert alpha_gate(uniform, "entropy", "log").item() == pytest.approx(0.0, abs=1e-6)
    # the source's H(α)/H normalisation: the gate never drops below 1 − ln 8 / 8 ≈ 0.740
    low = alpha_gate(uniform, "entropy", "n_heads").item()
    assert low == pytest.approx(1 - math.log(8) / 8) and 0.73 < low < 0.75


def test_mean_gate_is_the_constant_one_over_heads():
    for alpha in (torch.eye(8)[:1], torch.softmax(torch.randn(3, 8), -1)):
        assert torch.allclose(alpha_gate(alpha, "mean"), torch.full((alpha.shape[0], 1), 1 / 8))


def test_alpha_gated_without_learned_gate_adds_agg_times_feature():
    x, r, _ = _inputs()
    inj = make_injection("alpha_gated", D, DC, alpha_agg="max", use_learned_gate=False)
    alpha = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    y, _ = inj(x, r, alpha, None)
    expected = x + (alpha.amax(-1, keepdim=True) * inj.ln(inj.proj(r))).unsqueeze(1)
    assert torch.allclose(y, expected)
    assert not hasattr(inj.gate, "weight")


def test_unknown_mode_and_aggregation_are_rejected():
    with pytest.raises(ValueError, match="injection='sprinkle'"):
        make_injection("sprinkle", D, DC)
    with pytest.raises(ValueError, match="alpha_agg='median'"):
        make_injection("alpha_gated", D, DC, alpha_agg="median")
