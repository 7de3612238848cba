"""Refusing puzzles a solver's score cannot be read against: every puzzle must have exactly one
solution, or a board that solves it differently from the stored solution is scored wrong (and
one with none is not a Sudoku). The CSV loader already refuses a stored solution that breaks a
rule or contradicts a given; this counts solutions with the exact solver."""

from __future__ import annotations

import numpy as np

from studies.data.sudoku_solver import count_solutions


def check_unique(puzzles, where: str) -> None:
    """ValueError naming the first row of `puzzles` [N, 81] with no or several solutions."""
    for row, grid in enumerate(np.asarray(puzzles)):
        n = count_solutions(grid.tolist(), limit=2)
        if n != 1:
            what = "no solution" if n == 0 else "several solutions"
            raise ValueError(f"{where}: row {row} has {what}; the solver's score needs exactly one")
