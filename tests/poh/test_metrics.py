"""Sudoku and maze metrics on fixed predictions with hand-computed values."""

import math

import numpy as np
import pytest
import torch

from studies.poh.metrics import SUDOKU_CONVENTION, candidate_uniform_acc, maze_metrics, sudoku_metrics


def solved_grid() -> np.ndarray:
    r, c = np.arange(9)[:, None], np.arange(9)[None, :]
    return ((r * 3 + r // 3 + c) % 9 + 1).reshape(81)  # a valid Sudoku, digits 1..9


def two_puzzles():
    """Two copies of one solution, 5 blanks each (cells 0..4 and 10..14)."""
    sol = np.stack([solved_grid(), solved_grid()])
    puz = sol.copy()
    puz[0, 0:5] = 0
    puz[1, 10:15] = 0
    return puz, sol


def wrong(d):
    return d % 9 + 1  # a different digit, still 1..9


def test_all_right_and_three_of_five_right():
    puz, sol = two_puzzles()
    pred = sol.copy()
    pred[1, [13, 14]] = wrong(sol[1, [13, 14]])  # puzzle 2: blanks 10, 11, 12 right
    m = sudoku_metrics(pred, puz, sol)
    assert m["cell_acc"] == pytest.approx(8 / 10)  # (5 + 3) of 10 blanks
    assert m["grid_acc"] == pytest.approx(1 / 2)
    assert m["cell_acc_all81"] == pytest.approx(160 / 162)
    assert (m["n_puzzles"], m["n_blanks"], m["convention"]) == (2, 10, SUDOKU_CONVENTION)


def test_givens_never_count():
    puz, sol = two_puzzles()
    pred = puz.copy()  # copies the givens, predicts "0" on every blank
    assert sudoku_metrics(pred, puz, sol)["cell_acc"] == 0.0
    pred = np.where(puz == 0, wrong(sol), puz)  # copies givens, every blank wrong
    m = sudoku_metrics(pred, puz, sol)
    assert m["cell_acc"] == 0.0 and m["grid_acc"] == 0.0
    assert m["cell_acc_all81"] == pytest.approx(152 / 162)  # the all-81 convention flatters it
    pred = np.where(puz == 0, sol, wrong(sol))  # every given wrong, every blank right
    m = sudoku_metrics(pred, puz, sol)
    assert m["cell_acc"] == 1.0 and m["grid_acc"] == 1.0


def test_grid_needs_every_blank_and_accepts_torch():
    puz, sol = two_puzzles()
    pred = sol.copy()
    pred[0, 4] = wrong(sol[0, 4])  # one wrong blank in puzzle 1
    m = sudoku_metrics(torch.from_numpy(pred), torch.from_numpy(puz), torch.from_numpy(sol))
    assert m["grid_acc"] == 0.5 and m["cell_acc"] == pytest.approx(9 / 10)


def test_sudoku_shapes_must_agree():
    puz, sol = two_puzzles()
    with pytest.raises(ValueError, match="must be equal"):
        sudoku_metrics(sol[:1], puz, sol)


def test_maze_metrics_by_hand():
    reached = [True, True, True, False]
    length = [10, 42, 43, 5]
    bfs = [10, 40, 40, 5]
    m = maze_metrics(reached, length, bfs)
    assert m["acc"] == 0.75
    assert m["opt"] == 0.5  # 10 ≤ 10.5 and 42 ≤ 42.0; 43 > 42; the unreached one never counts
    assert m["exact_opt"] == 0.25
    assert m["len_ratio"] == pytest.approx((1 + 42 / 40 + 43 / 40) / 3)
    assert m["n"] == 4


def test_maze_metrics_with_nothing_reached():
    m = maze_metrics(np.zeros(3, bool), [9, 9, 9], [9, 9, 9])
    assert m["acc"] == m["opt"] == m["exact_opt"] == 0.0 and math.isnan(m["len_ratio"])


def test_candidate_uniform_floor_on_hand_built_puzzles():
    """One blank: its digit is forced (1.0). Rows 0 and 1 blank: each column lacks exactly the
    two digits of those rows, and the box rows they sit in are blank too: 1/2 per cell. An
    empty grid: 1/9, chance itself."""
    sol = solved_grid()
    one = sol.copy()
    one[40] = 0
    assert candidate_uniform_acc(one[None], sol[None]) == pytest.approx(1.0)
    rows01 = sol.copy()
    rows01[:18] = 0
    assert candidate_uniform_acc(rows01[None], sol[None]) == pytest.approx(0.5)
    assert candidate_uniform_acc(np.zeros((1, 81), int), sol[None]) == pytest.approx(1 / 9)
    # pooled over blank cells, as cell_acc is: 1 blank at 1.0 and 18 at 0.5
    assert candidate_uniform_acc(np.stack([one, rows01]), np.stack([sol, sol])) == pytest.approx((1 + 9) / 19)


def test_candidate_uniform_floor_counts_rows_columns_and_boxes():
    """One given (cell 10): its 20 peers (8 in its row, 8 in its column, 4 more in its box)
    allow 8 digits, the other 60 blanks all 9."""
    sol = solved_grid()
    puz = np.zeros(81, int)
    puz[10] = sol[10]
    want = (20 / 8 + 60 / 9) / 80
    assert candidate_uniform_acc(puz[None], sol[None]) == pytest.approx(want)
