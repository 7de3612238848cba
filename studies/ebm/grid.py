"""Sudoku geometry shared by the model, the metrics and the interpretability tools: encodings,
the cell → unit map and candidate sets as 9-bit masks (bit d−1 set = digit d allowed).

Why bit masks: the candidate-uniform floor and the strategy detector both need, for every blank
cell, the digits its row, column and box still allow; OR-reducing bits over the 27 units
(`studies.data.sudoku.UNITS`) computes that for a whole batch without a Python loop per cell.
"""

from __future__ import annotations

import numpy as np
import torch

from studies.data.sudoku import UNITS

# [81, 3]: the row, column and box unit (indices into UNITS) of each cell
CELL_UNITS = np.stack([np.nonzero((UNITS == c).any(1))[0] for c in range(81)])
CELL_UNITS.setflags(write=False)
ALL_DIGITS = 0x1FF  # bits 0..8 = digits 1..9


def puzzle_onehot(puzzles: torch.Tensor) -> torch.Tensor:
    """[B, 81] digits (0 = blank) → [B, 81, 10] float one-hot; channel 0 marks blanks."""
    return torch.nn.functional.one_hot(puzzles.long(), 10).float()


def solution_onehot(solutions: torch.Tensor) -> torch.Tensor:
    """[B, 81] digits 1-9 → [B, 81, 9] float one-hot (channel d−1 = digit d)."""
    return torch.nn.functional.one_hot(solutions.long() - 1, 9).float()


def givens_mask(puzzles: torch.Tensor) -> torch.Tensor:
    """[B, 81] bool, True on given cells."""
    return puzzles > 0


def digit_bits(boards) -> np.ndarray:
    """[..., 81] digits → [..., 81] int32 with bit d−1 set for digit d, 0 for blanks."""
    b = np.asarray(boards).astype(np.int64)
    return np.where(b > 0, 1 << np.clip(b - 1, 0, 8), 0).astype(np.int32)


def unit_bits(boards) -> np.ndarray:
    """[..., 81] → [..., 27]: the digits placed in each row/column/box, as bit masks."""
    return np.bitwise_or.reduce(digit_bits(boards)[..., UNITS], axis=-1)


def candidates(boards) -> np.ndarray:
    """[..., 81] → [..., 81] int32 candidate masks: digits not yet placed in the cell's row,
    column or box; 0 on filled cells."""
    b = np.asarray(boards)
    seen = np.bitwise_or.reduce(unit_bits(b)[..., CELL_UNITS], axis=-1)  # [..., 81]
    return np.where(b > 0, 0, ALL_DIGITS & ~seen).astype(np.int32)


def popcount(x) -> np.ndarray:
    """Number of set bits of each int (masks up to 9 bits)."""
    x = np.asarray(x).astype(np.int64)
    return ((x[..., None] >> np.arange(9)) & 1).sum(-1)
