"""Interpretability tools on hand-built inputs: lock-in, each elimination strategy on a
hand-built candidate grid, singles and the placement cascade on boards, head ratios, ablation."""

import numpy as np
import pytest
import torch

from studies.ebm.grid import candidates
from studies.ebm.interp import (
    STRATEGIES,
    ablate_head,
    attention_maps,
    eliminate_box_line,
    eliminate_naked_pairs,
    eliminate_pointing,
    eliminate_x_wing,
    head_ablation_effects,
    head_specialisation,
    lock_in_steps,
    locked_boards,
    placement_strategies,
    singles,
    strategy_codes,
    trajectory_strategies,
)
from studies.ebm.model import EBMConfig, EBMSudoku

SOLVED = np.array([[(r * 3 + r // 3 + c) % 9 + 1 for c in range(9)] for r in range(9)]).reshape(81)
ONE, TWO = 1, 2  # bits of digits 1 and 2


def full():
    return np.full((1, 81), 0x1FF, np.int32)


def cells(rows, cols):
    return [r * 9 + c for r in rows for c in cols]


def removed(before, after, bit):
    """Cells that lost `bit` (and nothing else changed)."""
    lost = (before & ~after)[0]
    assert set(np.unique(lost)) <= {0, bit}
    return sorted(np.flatnonzero(lost == bit).tolist())


def test_lock_in_is_the_first_step_of_a_sustained_commitment():
    p = np.full((4, 1, 81, 9), 0.0)
    track = [[0.5, 0.95, 0.95, 0.95], [0.95, 0.5, 0.95, 0.95], [0.95, 0.95, 0.95, 0.5], [0.95] * 4]
    for cell, values in enumerate(track):
        p[:, 0, cell, 4] = values  # digit 5
    digits = np.full((1, 81), 5)
    assert lock_in_steps(p, digits)[0, :4].tolist() == [1, 2, -1, 0]
    assert (lock_in_steps(p, digits)[0, 4:] == -1).all()
    boards = locked_boards(p)
    assert boards[1, 0, :4].tolist() == [5, 0, 5, 5]


def test_pointing_pair_clears_the_rest_of_the_line():
    cand = full()
    cand[0, cells([1, 2], [0, 1, 2]) + [2]] &= ~ONE  # digit 1 in box 0 only at cells 0, 1 (row 0)
    assert removed(cand, eliminate_pointing(cand), ONE) == list(range(3, 9))


def test_box_line_reduction_clears_the_rest_of_the_box():
    cand = full()
    cand[0, 3:9] &= ~ONE  # digit 1 in row 0 only in box 0
    assert removed(cand, eliminate_box_line(cand), ONE) == cells([1, 2], [0, 1, 2])
    assert removed(cand, eliminate_pointing(cand), ONE) == []  # not a pointing pattern


def test_naked_pair_clears_its_digits_from_the_shared_units():
    cand = full()
    cand[0, [0, 1]] = ONE | TWO
    out = eliminate_naked_pairs(cand)
    rest_row, rest_box = list(range(2, 9)), cells([1, 2], [0, 1, 2])
    for c in rest_row + rest_box:
        assert out[0, c] == 0x1FF & ~(ONE | TWO)
    others = sorted(set(range(81)) - set(rest_row) - set(rest_box))
    assert (out[0, others] == cand[0, others]).all()


def test_x_wing_clears_its_columns_in_other_rows():
    cand = full()
    for r in (0, 4):
        cand[0, cells([r], [0, 2, 3, 4, 5, 6, 8])] &= ~ONE  # digit 1 in rows 0, 4 only at columns 1, 7
    expected = cells([1, 2, 3, 5, 6, 7, 8], [1, 7])
    assert removed(cand, eliminate_x_wing(cand), ONE) == sorted(expected)
    transposed = cand.reshape(9, 9).T.reshape(1, 81)  # the column version
    assert removed(transposed, eliminate_x_wing(transposed), ONE) == sorted(c % 9 * 9 + c // 9 for c in expected)


def test_singles_on_hand_built_candidates():
    cand = full()
    cand[0, 40] = 1 << 4  # naked single 5
    cand[0, 1:9] &= ~(1 << 6)  # digit 7 only at cell 0 in row 0: hidden single
    naked, hidden = singles(cand)
    assert np.flatnonzero(naked[0]).tolist() == [40] and naked[0, 40] == 1 << 4
    assert hidden[0, 0] == 1 << 6


def test_placements_are_classified_naked_hidden_or_unknown():
    before = SOLVED.copy()
    before[0] = 0
    after = SOLVED.copy()
    codes = placement_strategies(before[None], after[None])[0]
    assert STRATEGIES[codes[0]] == "naked_single" and (codes[1:] == -1).all()
    wrong = after.copy()
    wrong[0] = SOLVED[1]
    assert STRATEGIES[placement_strategies(before[None], wrong[None])[0, 0]] == "unknown"
    # digit 1 in box 0: rows 1, 2 and columns 1, 2 hold a 1 elsewhere → only cell (0, 0)
    hidden = np.zeros(81, np.int64)
    hidden[[1 * 9 + 4, 2 * 9 + 7, 3 * 9 + 1, 6 * 9 + 2]] = 1
    assert bin(candidates(hidden[None])[0, 0]).count("1") == 9  # not a naked single
    placed = hidden.copy()
    placed[0] = 1
    assert STRATEGIES[placement_strategies(hidden[None], placed[None])[0, 0]] == "hidden_single"


TINY = EBMConfig(
    d_model=16, n_layers=1, n_heads=2, d_ff=32, d_z=8, d_pred=16, dec_layers=2, dec_heads=4, d_cell=16, dropout=0.0
)


def test_head_specialisation_ratios_on_hand_built_maps():
    row_head = np.zeros((81, 81))
    for q in range(81):
        mates = [k for k in range(q // 9 * 9, q // 9 * 9 + 9) if k != q]
        row_head[q, mates] = 1 / 8
    uniform = np.full((81, 81), 1 / 81)
    maps = np.stack([row_head, uniform])[None, None]  # [layers 1, B 1, heads 2, 81, 81]
    ratios, labels = head_specialisation(maps)
    np.testing.assert_allclose(ratios[0, 0], [81 / 8, 0, 81 / 32])
    np.testing.assert_allclose(ratios[0, 1], [1, 1, 1])
    assert labels[0].tolist() == ["row", "mixed"]
    ratios, _ = head_specialisation(maps, include_self=True)  # the source: the query is in its groups
    np.testing.assert_allclose(ratios[0, 0], [81 / 9, 0, 81 * 2 / 8 / 9])


def test_attention_maps_are_distributions_per_head():
    torch.manual_seed(0)
    model = EBMSudoku(TINY)
    puzzles = torch.as_tensor(SOLVED[None].repeat(2, 0))
    puzzles[:, :30] = 0
    maps = attention_maps(model, puzzles, torch.randn(2, 8))
    assert maps.shape == (2, 2, 4, 81, 81)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 4, 81))


def test_ablating_a_head_removes_exactly_that_heads_contribution():
    torch.manual_seed(0)
    model = EBMSudoku(TINY)
    attn = model.decoder.blocks.layers[1].self_attn
    x = torch.randn(2, 81, 16)
    with torch.no_grad():
        full_out, w = attn(x, x, x, need_weights=True, average_attn_weights=False)
        v = (x @ attn.in_proj_weight[32:].T + attn.in_proj_bias[32:]).view(2, 81, 4, 4)
        head = 2
        own = (w[:, head] @ v[:, :, head]) @ attn.out_proj.weight[:, 8:12].T  # head 2's contribution
        before = attn.out_proj.weight.clone()
        with ablate_head(model, 1, head):
            ablated, w_abl = attn(x, x, x, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(ablated, full_out - own)
        torch.testing.assert_close(w_abl, w)  # every head still attends the same way
        assert torch.equal(attn.out_proj.weight, before)  # restored on exit
    with pytest.raises(ValueError, match="head=4 out of range"), ablate_head(model, 0, 4):
        pass


def test_head_ablation_effects_share_the_sampler_seed():
    """A head whose out-projection columns are already zero changes nothing when ablated: the
    exact 0 proves both sides ran from the same z0 and noise; a live head does change boards."""
    torch.manual_seed(0)
    model = EBMSudoku(TINY).eval()
    with torch.no_grad():
        model.decoder.blocks.layers[0].self_attn.out_proj.weight[:, 0:4] = 0  # head 0 of layer 0
        model.decoder.blocks.layers[1].self_attn.out_proj.weight.mul_(50)  # make layer 1 matter
    puzzles = torch.as_tensor(SOLVED[None].repeat(3, 0))
    puzzles[:, ::2] = 0
    effects = head_ablation_effects(model, puzzles, SOLVED[None].repeat(3, 0), chains=2, steps=2)
    assert effects.shape == (2, 4)
    assert effects[0, 0] == 0.0
    assert np.abs(effects[1]).sum() > 0


def _pointing_grid():
    cand = full()
    cand[0, cells([1, 2], [0, 1, 2]) + [2]] &= ~ONE
    return cand


def _box_line_grid():
    cand = full()
    cand[0, 3:9] &= ~ONE
    return cand


def _naked_pair_grid():
    cand = full()
    cand[0, [0, 1]] = ONE | TWO
    return cand


def _x_wing_grid():
    cand = full()
    for r in (0, 4):
        cand[0, cells([r], [0, 2, 3, 4, 5, 6, 8])] &= ~ONE
    return cand


@pytest.mark.parametrize(
    ("grid", "cell", "mask", "digit", "expected"),
    [
        (_pointing_grid, 5, ONE | TWO, 2, "pointing"),  # cell 5 loses 1 → {2}
        (_box_line_grid, 10, ONE | TWO, 2, "box_line"),  # cell 10 loses 1 → {2}
        (_naked_pair_grid, 5, ONE | TWO | 4, 3, "naked_pair"),  # cell 5 loses 1, 2 → {3}
        (_x_wing_grid, 19, ONE | 8, 4, "x_wing"),  # cell (2, 1) loses 1 → {4}
        (_x_wing_grid, 19, ONE | 8, 6, "unknown"),  # 6 is not even a candidate
    ],
)
def test_the_cascade_names_the_easiest_strategy_that_forces_a_placement(grid, cell, mask, digit, expected):
    cand = grid()
    cand[0, cell] = mask
    placed = np.zeros((1, 81), np.int64)
    placed[0, cell] = digit
    codes = strategy_codes(cand, placed)
    assert STRATEGIES[codes[0, cell]] == expected
    assert (np.delete(codes[0], cell) == -1).all()


def test_trajectory_events_are_classified_per_step():
    """Step 0: cell 0 undecided, cell 1 committed to a wrong digit; step 1: cell 0 commits to
    its only candidate (naked single) and cell 1 switches to the right digit (naked single once
    its wrong digit is dropped); step 2: nothing changes."""
    probs = np.zeros((3, 1, 81, 9))
    probs[:, 0, np.arange(81), SOLVED - 1] = 1.0
    probs[0, 0, 0] = 1 / 9
    probs[0, 0, 1] = 0
    probs[0, 0, 1, SOLVED[2] - 1] = 1.0  # wrong: the digit of cell 2
    codes = trajectory_strategies(probs)
    assert codes.shape == (2, 1, 81)
    assert [STRATEGIES[c] for c in codes[0, 0, :2]] == ["naked_single", "naked_single"]
    assert (codes[0, 0, 2:] == -1).all() and (codes[1] == -1).all()
