"""Hybrid PoH-HRM Sudoku solver, its config, ACT, and the Sudoku baseline."""

import math

import pytest
import torch
import torch.nn.functional as F

from studies.poh.baseline import SudokuBaseline, SudokuBaselineConfig
from studies.poh.config import HRMConfig
from studies.poh.hrm import HybridHRM, act_q_loss
from studies.poh.injection import INJECTION_MODES
from studies.poh.parity import count_params

TINY = dict(d_model=32, n_heads=4, d_ff=64, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2)


def easy_puzzles(n: int, blanks: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n valid solved grids (digit-permuted pattern grids) with `blanks` cells blanked."""
    g = torch.Generator().manual_seed(seed)
    r, c = torch.arange(9)[:, None], torch.arange(9)[None, :]
    base = (r * 3 + r // 3 + c) % 9  # a valid Sudoku with digits 0..8
    sols, puzzles = [], []
    for _ in range(n):
        sol = (torch.randperm(9, generator=g)[base] + 1).flatten()
        puzzle = sol.clone()
        puzzle[torch.randperm(81, generator=g)[:blanks]] = 0
        sols.append(sol), puzzles.append(puzzle)
    return torch.stack(puzzles).to(torch.uint8), torch.stack(sols)


@pytest.mark.parametrize("mode", INJECTION_MODES)
@pytest.mark.parametrize("routing_point", ["pre_proj", "post_proj"])
def test_forward_returns_logits_alpha_and_entropy(mode, routing_point):
    torch.manual_seed(0)
    model = HybridHRM(HRMConfig(**TINY, injection=mode, routing_point=routing_point))
    out = model(easy_puzzles(3, 20)[0])
    assert out.logits.shape == (3, 81, 10)
    assert out.alpha["L"].shape == (4, 3, 4) and out.alpha["H"].shape == (2, 3, 4)
    assert out.entropy.shape == (3,) and out.entropy.requires_grad
    assert out.q_halt is None and out.step_logits is None


def test_state_does_not_leak_between_forwards():
    torch.manual_seed(0)
    model = HybridHRM(HRMConfig(**TINY, injection="cross_attn")).eval()
    x = easy_puzzles(2, 30)[0]
    assert torch.equal(model(x).logits, model(x).logits)


@pytest.mark.parametrize(
    "grad_mode, L_expected",
    [("last_h_cycle", [False] * 4 + [True] * 2), ("one_step", [False] * 5 + [True])],
)
def test_gradients_only_through_the_last_H_cycle(grad_mode, L_expected):
    cfg = HRMConfig(**{**TINY, "H_cycles": 3, "T": 1}, grad_mode=grad_mode)  # T 1: gru_h in use
    model = HybridHRM(cfg)
    seen = {"L": [], "H": []}
    model.L_level.register_forward_hook(lambda m, i, o: seen["L"].append(o[0].requires_grad))
    model.H_level.register_forward_hook(lambda m, i, o: seen["H"].append(o[0].requires_grad))
    out = model(easy_puzzles(2, 20)[0])
    assert seen == {"L": L_expected, "H": [False, False, True]}
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.H_level.parameters())
    assert model.L_level.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_no_grad_forward_builds_no_graph():
    model = HybridHRM(HRMConfig(**TINY, halt_max_steps=2))
    with torch.no_grad():
        out = model(easy_puzzles(2, 20)[0])
    assert not out.logits.requires_grad and not out.entropy.requires_grad


def test_act_q_head_starts_at_minus_five_and_returns_per_step_outputs():
    model = HybridHRM(HRMConfig(**TINY, halt_max_steps=3))
    out = model(easy_puzzles(4, 20)[0])
    assert out.q_halt.shape == out.q_continue.shape == out.target_q_continue.shape == (3, 4)
    assert torch.allclose(out.q_halt, torch.full((3, 4), -5.0))
    assert torch.allclose(torch.sigmoid(out.q_halt), torch.full((3, 4), 1 / (1 + math.exp(5))))
    assert out.step_logits.shape == (3, 4, 81, 10)
    assert torch.equal(out.halt_step, torch.full((4,), 2))  # q_halt == q_continue: never halts
    assert torch.equal(out.logits, out.step_logits[-1])
    assert len(out.alpha["L"]) == 3 * 2 * 2 and not out.target_q_continue.requires_grad


def test_act_q_loss_trains_the_q_head():
    torch.manual_seed(0)
    model = HybridHRM(HRMConfig(**TINY, halt_max_steps=2))
    x, y = easy_puzzles(4, 20)
    out = model(x)
    solved = (out.step_logits.argmax(-1) == y).all(-1)  # [K, B]
    loss = act_q_loss(out.q_halt, out.q_continue, solved, out.target_q_continue)
    manual = 0.5 * F.binary_cross_entropy_with_logits(out.q_halt, solved.float()) + 0.5 * F.mse_loss(
        torch.sigmoid(out.q_continue), out.target_q_continue
    )
    assert torch.allclose(loss, manual)
    loss.backward()
    assert model.q_head.weight.grad.abs().sum() > 0


def test_eval_stops_once_every_sequence_halts():
    model = HybridHRM(HRMConfig(**TINY, halt_max_steps=4)).eval()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([1.0, -1.0]))  # q_halt > q_continue from step 1
        out = model(easy_puzzles(2, 20)[0])
    assert out.step_logits.shape[0] == 1 and torch.equal(out.halt_step, torch.zeros(2, dtype=torch.long))


def test_config_errors_name_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"HRMConfig\.injection='sprinkle'.*broadcast"):
        HRMConfig(injection="sprinkle")
    with pytest.raises(ValueError, match=r"HRMConfig\.entropy_norm"):
        HRMConfig(entropy_norm="sqrt")
    with pytest.raises(ValueError, match=r"HRMConfig\.d_model=30.*n_heads=8"):
        HRMConfig(d_model=30)
    with pytest.raises(ValueError, match=r"HRMConfig\.topk"):
        HRMConfig(topk=9)
    with pytest.raises(ValueError, match=r"HRMConfig\.halt_max_steps"):
        HRMConfig(halt_max_steps=0)


# Ours at the paper config (d 512, 8 heads, d_ff 2048, layers 2/2, K 4). The source's counts
# are 2 higher in every mode: it stored each controller's log-temperature as a frozen
# nn.Parameter (one per level).
PAPER_COUNTS = {
    "none": 25_781_788,
    "broadcast": 26_310_174,
    "film": 27_357_724,
    "depth_token": 26_309_148,
    "cross_attn": 28_410_396,
    "alpha_gated": 26_310_174,
}


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_paper_config_parameter_counts_are_pinned(mode):
    cfg = HRMConfig(injection=mode, halt_max_steps=4)
    assert count_params(lambda: HybridHRM(cfg)) == PAPER_COUNTS[mode]


def test_baseline_shares_embedding_and_head_shapes():
    model = SudokuBaseline(SudokuBaselineConfig(d_model=32, n_heads=4, d_ff=64, n_layers=2))
    out = model(easy_puzzles(2, 10)[0])
    assert out.logits.shape == (2, 81, 10) and out.alpha == {} and out.entropy is None


def test_hrm_overfits_eight_easy_puzzles():
    torch.manual_seed(0)
    model = HybridHRM(HRMConfig(**{**TINY, "H_cycles": 1}, temperature=1.0))
    x, y = easy_puzzles(8, 8)
    blank = x == 0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(x).logits[blank], y[blank])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.25 * sum(losses[:5]) / 5
