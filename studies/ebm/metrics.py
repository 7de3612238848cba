"""Solver metrics on predicted boards, and the two floors they are read against.

Definitions (all on numpy arrays [N, 81] of digits; predictions 1-9, puzzles 0 = blank):
- blank_acc: correct blank cells / all blank cells, pooled over puzzles (givens never count).
- puzzle_acc: fraction of puzzles whose 81 cells all equal the solution.
- group_ok: fraction of the N·27 rows/columns/boxes holding nine distinct digits — the
  "constraint satisfaction" of the source's log.
- valid_frac: fraction of predicted boards that are complete valid Sudokus (every group ok);
  with the givens hard-set, such a board solves its puzzle when the solution is unique.
- chance: 1/9, a uniform guess per blank.
- candidate floor: mean over blank cells of 1/|digits allowed by the givens in the cell's row,
  column and box| — a guess uniform over those candidates, what a model that only learned
  the elimination rule would score.
"""

from __future__ import annotations

import numpy as np

from studies.data.sudoku import UNITS
from studies.ebm.grid import ALL_DIGITS, candidates, digit_bits, popcount

CHANCE = 1 / 9


def blank_accuracy(pred, solutions, puzzles) -> float:
    blank = np.asarray(puzzles) == 0
    return float((np.asarray(pred) == np.asarray(solutions))[blank].mean())


def puzzle_accuracy(pred, solutions) -> float:
    return float((np.asarray(pred) == np.asarray(solutions)).all(1).mean())


def group_ok(pred) -> np.ndarray:
    """[N, 27] bool: group holds each of 1-9 exactly once."""
    return np.bitwise_or.reduce(digit_bits(pred)[:, UNITS], axis=-1) == ALL_DIGITS


def candidate_floor(puzzles) -> float:
    """Mean over blank cells of 1 / (number of candidates left by the givens)."""
    p = np.asarray(puzzles)
    n = popcount(candidates(p))[p == 0]
    if (n == 0).any():
        raise ValueError("a blank cell has no candidate: the puzzle contradicts itself")
    return float((1.0 / n).mean())


def solver_metrics(pred, solutions, puzzles) -> dict[str, float]:
    """All metrics of the module docstring for one decoding mode's predictions."""
    ok = group_ok(pred)
    return {
        "blank_acc": blank_accuracy(pred, solutions, puzzles),
        "puzzle_acc": puzzle_accuracy(pred, solutions),
        "group_ok": float(ok.mean()),
        "valid_frac": float(ok.all(1).mean()),
        "n": len(pred),
        "chance": CHANCE,
        "candidate_floor": candidate_floor(puzzles),
    }
