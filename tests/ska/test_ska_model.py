"""Causality of the SKA, SDPA, SDPA+conv and conv-only LMs, router top-k, config validation."""

import pytest
import torch

from studies.ska.banks import add_signatures, build_bank
from studies.ska.model import CausalLM, LMConfig

V, L, W, STRIDE, K = 11, 20, 4, 2, 16


def _cfg(**kw):
    base = dict(
        vocab_size=V,
        seq_len=L,
        d_model=16,
        n_layers=2,
        n_heads=2,
        window=W,
        stride=STRIDE,
        minhash_k=K,
        score_mode="delta_plus_dot",
        beta=0.5,
    )
    return LMConfig(**{**base, **kw})


def _bank(tokens):
    """As the pipeline does: the bank is built from exactly the tokens the model reads."""
    return add_signatures(build_bank(tokens, W, STRIDE), k=K, seed=3, vocab_size=V)


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    model = CausalLM(cfg).eval()
    with torch.no_grad():  # move the gates off their init so every path carries signal
        for name, p in model.named_parameters():
            if name.endswith("rho"):
                p.fill_(1.0)
            elif name.endswith("alpha"):
                p.fill_(0.7)
    return model


CASES = {
    "ska_dense": dict(router_topk=0, adapter_rank=0),
    "ska_top2_adapter": dict(router_topk=2, adapter_rank=3),
    "ska_dense_adapter_intersect": dict(adapter_rank=3, score_mode="intersect_plus_dot"),
    "ska_top1_rbf": dict(router_topk=1, score_mode="delta_rbf"),
    "ska_bf16": dict(router_topk=2, precision="bf16"),
    "ska_no_mixer": dict(mixer="none"),
    "sdpa": dict(attention="sdpa"),
    "sdpa_conv": dict(attention="sdpa", mixer="conv"),
    "sdpa_conv_wide_mlp": dict(attention="sdpa", mixer="conv", d_ff=40),
    "none": dict(attention="none"),
}


@pytest.mark.parametrize("case", CASES)
def test_changing_token_t_plus_1_leaves_logits_up_to_t_bit_identical(case):
    cfg = _cfg(**CASES[case])
    model = _model(cfg)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, V, (3, L), generator=g)
    with torch.no_grad():
        ref = model(tokens, _bank(tokens))
        # 2,3,4: around the first window end (4); 7,8: a stride boundary; 17,18: the tail
        for t in (0, 2, 3, 4, 5, 7, 8, 11, 17, 18):
            changed = tokens.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1 + torch.arange(3)) % V
            out = model(changed, _bank(changed))
            assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), f"leak at t={t}"
            assert not torch.equal(out[:, t + 1 :], ref[:, t + 1 :])  # the change is seen


def test_sets_reach_tokens_beyond_the_conv_window():
    """SKA must carry information the width-w causal conv cannot: from >w tokens back."""
    model = _model(_cfg())
    tokens = torch.randint(0, V, (1, L), generator=torch.Generator().manual_seed(2))
    changed = tokens.clone()
    changed[0, 0] = (changed[0, 0] + 1) % V
    with torch.no_grad():
        a, b = model(tokens, _bank(tokens)), model(changed, _bank(changed))
    # 2 layers of width-4 convs reach 6 positions; position 15 hears token 0 only via sets
    assert not torch.equal(a[0, 15], b[0, 15])


def test_router_topk_at_least_n_sets_equals_dense():
    tokens = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(4))
    bank = _bank(tokens)
    n_sets = bank.padded().valid.shape[1]
    with torch.no_grad():
        dense = _model(_cfg(router_topk=0, adapter_rank=2))(tokens, bank)
        for k in (n_sets, n_sets + 5):
            out = _model(_cfg(router_topk=k, adapter_rank=2))(tokens, bank)
            assert torch.equal(out, dense)
        sparse = _model(_cfg(router_topk=1, adapter_rank=2))(tokens, bank)
    assert not torch.equal(sparse, dense)


def test_beta_zero_model_has_no_content_projections_and_runs():
    model = _model(_cfg(beta=0.0))
    assert not any(n.endswith((".a.weight", ".b.weight")) for n, _ in model.named_parameters())
    tokens = torch.randint(0, V, (2, L))
    assert torch.isfinite(model(tokens, _bank(tokens))).all()


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_kernel_rounds_its_inputs_and_stays_close_to_fp32(precision, dtype):
    tokens = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(2))
    bank = _bank(tokens)
    full = _model(_cfg())
    half = _model(_cfg(precision=precision))
    half.load_state_dict(full.state_dict())
    with torch.no_grad():
        ref, out = full(tokens, bank), half(tokens, bank)
    assert out.dtype == torch.float32  # only the set kernel runs in half precision
    gap = (out - ref).abs().max().item()
    # the kernel rounds qc, kc, v to ``dtype``: a real but small change in the logits
    assert 0 < gap < 4 * torch.finfo(dtype).eps * ref.abs().max().item()


def test_models_differ_only_in_token_mixing_and_count_params():
    ska, sdpa = CausalLM(_cfg()), CausalLM(_cfg(attention="sdpa"))
    assert ska.n_params() > 0 and sdpa.n_params() > 0
    assert ska.head.weight is ska.tok.weight  # tied head
    shared = {n for n, _ in sdpa.named_parameters() if ".att." not in n and "norm_att" not in n}
    assert shared <= {n for n, _ in ska.named_parameters()}


def test_gradients_reach_every_ska_parameter():
    model = _model(_cfg(adapter_rank=2, router_topk=3)).train()
    tokens = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(5))
    model(tokens, _bank(tokens)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(attention="flash"), "attention"),
        (dict(score_mode="cos"), "score_mode"),
        (dict(backend="keops_missing"), "backend"),
        (dict(stride=5), "stride"),
        (dict(router_topk=-1), "router_topk"),
        (dict(d_model=15), "n_heads"),
        (dict(mixer="band"), "mixer"),
        (dict(precision="fp8"), "precision='fp8'.*available: fp32, fp16, bf16"),
        (dict(backend="keops", precision="bf16"), "precision='bf16'.*supported combinations: python"),
    ],
)
def test_config_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_ska_refuses_a_missing_or_mismatched_bank():
    model = CausalLM(_cfg())
    tokens = torch.randint(0, V, (2, L))
    with pytest.raises(ValueError, match="bank"):
        model(tokens, None)
    other = add_signatures(build_bank(tokens, 6, 3), k=K, seed=3, vocab_size=V)
    with pytest.raises(ValueError, match="window"):
        model(tokens, other)


def test_without_set_attention_switches_the_branch_off_and_back_on():
    from studies.ska.diagnostics import set_gates, without_set_attention

    tokens = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(4))
    bank = _bank(tokens)
    ska = _model(_cfg())  # gates moved to ρ = 1 by _model
    no_branch = _model(_cfg())
    for block in no_branch.blocks:  # the reference: the same model with the SKA residual removed
        block.sets.forward = lambda x, e, pb: torch.zeros_like(x)
    assert set_gates(ska) == pytest.approx([torch.sigmoid(torch.tensor(1.0)).item()] * 2)
    assert set_gates(_model(_cfg(attention="sdpa"))) == []
    with torch.no_grad():
        before = ska(tokens, bank)
        with without_set_attention(ska) as n:
            off = ska(tokens, bank)
        after = ska(tokens, bank)
        assert n == 2
        assert torch.equal(off, no_branch(tokens, bank))
        assert torch.equal(before, after) and not torch.allclose(before, off)


def test_gate_init_sets_the_initial_branch_weight():
    gates = [torch.sigmoid(b.sets.rho).item() for b in CausalLM(_cfg(gate_init=0.0)).blocks]
    assert gates == [0.5, 0.5]
    assert torch.sigmoid(CausalLM(_cfg()).blocks[0].sets.rho).item() == pytest.approx(0.0474, abs=1e-4)
