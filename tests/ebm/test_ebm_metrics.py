"""Solver metrics and floors on hand-built predictions."""

import numpy as np
import pytest

from studies.ebm.grid import candidates, popcount
from studies.ebm.metrics import blank_accuracy, candidate_floor, group_ok, puzzle_accuracy, solver_metrics

# a valid solved grid: each row is the previous one shifted by 3 (by 4 across bands)
SOLVED = np.array([[(r * 3 + r // 3 + c) % 9 + 1 for c in range(9)] for r in range(9)]).reshape(81)


def test_the_reference_grid_is_valid():
    assert group_ok(SOLVED[None]).all()


def test_blank_and_puzzle_accuracy_on_fixed_predictions():
    puzzles = np.stack([SOLVED.copy(), SOLVED.copy()])
    puzzles[:, :4] = 0  # 4 blanks each, 8 in all
    pred = np.stack([SOLVED.copy(), SOLVED.copy()])
    pred[1, 0] = pred[1, 1]  # one wrong blank in puzzle 1
    pred[1, 50] = 5 if SOLVED[50] != 5 else 6  # a wrong *given*: never counts in blank_acc
    assert blank_accuracy(pred, puzzles * 0 + SOLVED, puzzles) == 7 / 8
    assert puzzle_accuracy(pred, np.stack([SOLVED, SOLVED])) == 0.5


def test_group_ok_counts_broken_rows_columns_and_boxes():
    pred = SOLVED.copy()[None]
    pred[0, 0] = pred[0, 1]  # breaks row 0, column 0, box 0
    ok = group_ok(pred)
    assert ok.sum() == 24 and not ok[0, 0] and not ok[0, 9] and not ok[0, 18]
    puzzles = np.stack([SOLVED, SOLVED])
    puzzles[:, 0] = 0
    m = solver_metrics(np.concatenate([pred, SOLVED[None]]), np.stack([SOLVED, SOLVED]), puzzles)
    assert m["group_ok"] == pytest.approx(51 / 54)
    assert m["valid_frac"] == 0.5 and m["blank_acc"] == 0.5 and m["candidate_floor"] == 1.0


def test_candidate_floor_on_a_hand_built_puzzle():
    """One blank in a full grid, or a whole blank row: the givens leave one candidate (floor 1);
    an empty grid: 9 (floor 1/9); two givens: counts by which units see them."""
    one = SOLVED.copy()
    one[0] = 0
    assert candidate_floor(one[None]) == 1.0
    row = SOLVED.copy()
    row[:9] = 0  # cell (0, c): its column's 8 givens leave one candidate
    assert candidate_floor(row[None]) == 1.0
    empty = np.zeros(81, dtype=np.int64)
    assert candidate_floor(empty[None]) == pytest.approx(1 / 9)
    two = np.zeros(81, dtype=np.int64)
    two[1], two[9] = 1, 2  # cell 0 sees 1 (row) and 2 (column): 7 candidates
    cand = popcount(candidates(two[None]))[0]
    assert cand[0] == 7 and cand[2] == 7 and cand[3] == 8 and cand[80] == 9  # cell 2 shares box 0 with cell 9
    blanks = cand[two == 0]
    assert candidate_floor(two[None]) == pytest.approx(np.mean(1 / blanks))


def test_a_contradictory_puzzle_is_refused():
    bad = np.zeros(81, dtype=np.int64)
    bad[1:9] = np.arange(1, 9)  # row 0 holds 1-8
    bad[9 * 4] = 9  # column 0 holds 9 → cell 0 has no candidate
    with pytest.raises(ValueError, match="no candidate"):
        candidate_floor(bad[None])
