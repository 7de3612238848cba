"""Pointer controller and PoH attention."""

import math

import pytest
import torch

from studies.poh.controller import PointerController, keep_topk, routing_entropy
from studies.poh.layers import PoHAttention, PoHBlock, uniform_alpha


def test_slow_state_changes_only_every_T_calls():
    torch.manual_seed(0)
    ctrl = PointerController(d_model=16, n_heads=4, T=3)
    state = ctrl.init_state(2, torch.zeros(1))
    changed = []
    for _ in range(10):
        out = ctrl(torch.randn(2, 5, 16), state)
        changed.append(not torch.equal(out.state.h, state.h))
        assert not torch.equal(out.state.l, state.l)  # fast state moves every call
        state = out.state
    assert changed == [t % 3 == 0 for t in range(10)]
    assert state.t == 10


def test_controller_outputs_shapes_and_simplex():
    ctrl = PointerController(d_model=16, n_heads=4, d_ctrl=8)
    out = ctrl(torch.randn(3, 7, 16))
    assert out.alpha.shape == (3, 4) and out.r.shape == (3, 8) and out.entropy.shape == (3,)
    assert torch.allclose(out.alpha.sum(-1), torch.ones(3))
    assert out.state.h.shape == out.state.l.shape == (3, 8)


def test_routing_entropy_has_a_gradient_to_the_controller():
    ctrl = PointerController(d_model=16, n_heads=4)
    out = ctrl(torch.randn(2, 5, 16))
    out.entropy.sum().backward()
    assert ctrl.w_r.weight.grad is not None and ctrl.w_r.weight.grad.abs().sum() > 0


def test_topk_keeps_k_heads_and_renormalises():
    alpha = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    kept = keep_topk(alpha, 2)
    assert torch.allclose(kept, torch.tensor([[0.0, 4 / 7, 0.0, 3 / 7]]))
    ctrl = PointerController(d_model=16, n_heads=6, topk=2)
    out = ctrl(torch.randn(4, 5, 16))
    assert ((out.alpha > 0).sum(-1) == 2).all()
    assert torch.allclose(out.alpha.sum(-1), torch.ones(4))
    assert torch.isfinite(out.entropy).all()


def test_routing_entropy_of_uniform_and_one_hot():
    assert routing_entropy(torch.full((1, 8), 1 / 8)).item() == pytest.approx(math.log(8))
    assert routing_entropy(torch.eye(8)[:1]).item() == 0.0


@pytest.mark.parametrize("routing_point", ["pre_proj", "post_proj"])
def test_uniform_alpha_equals_plain_attention(routing_point):
    torch.manual_seed(0)
    attn = PoHAttention(16, 4, routing_point)
    x = torch.randn(2, 5, 16)
    y = attn(x, uniform_alpha(2, 4, x))
    assert y.shape == (2, 5, 16)
    assert torch.allclose(y, attn(x, None), atol=1e-6)


def test_routing_points_differ_for_peaked_alpha():
    torch.manual_seed(0)
    pre, post = PoHAttention(16, 4, "pre_proj"), PoHAttention(16, 4, "post_proj")
    post.load_state_dict(pre.state_dict())
    x, alpha = torch.randn(2, 5, 16), torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 2)
    assert not torch.allclose(pre(x, alpha), post(x, alpha))


def test_pre_proj_zero_weight_silences_a_head():
    torch.manual_seed(0)
    attn = PoHAttention(8, 2, "pre_proj")
    x = torch.randn(1, 3, 8)
    only_first = attn(x, torch.tensor([[1.0, 0.0]]))
    with torch.no_grad():  # zeroing head 2's value projection must not change the output
        attn.qkv.weight[2 * 8 + 4 :] = 0
        attn.qkv.bias[2 * 8 + 4 :] = 0
    assert torch.allclose(only_first, attn(x, torch.tensor([[1.0, 0.0]])), atol=1e-6)


def test_block_rejects_unknown_options():
    with pytest.raises(ValueError, match="routing_point"):
        PoHAttention(8, 2, "sideways")
    with pytest.raises(ValueError, match="norm"):
        PoHBlock(8, 2, 16, norm="batch")
