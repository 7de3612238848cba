"""Scores of the PoH studies, computed from fixed predictions (no model in here).

Sudoku (docs/studies.md: poh_injection), convention ``blank_cells`` — the one every table must name:
- ``cell_acc``  = correct blank cells / blank cells, pooled over the whole set (givens never
  count: a model that copies the givens and misses every blank scores 0);
- ``grid_acc``  = puzzles whose every blank cell is right / puzzles (a puzzle with no blank
  counts as solved);
- ``cell_acc_all81`` = correct cells / all 81 cells of every puzzle, the prediction scored on
  given cells too. The source's trainer also used this convention; it is reported beside the
  blank-cell number, never instead of it.

Maze (docs/studies.md: poh_scaling): ``length`` and ``bfs_length`` count *cells* on the path, start and goal
included (the source compared len(predicted cells) with len(BFS cells)).
- ``acc``       = roll-outs that reached the goal / mazes;
- ``opt``       = reached and length ≤ tol · bfs_length (tol 1.05, the source's definition);
- ``exact_opt`` = reached and length == bfs_length.
All values are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

import numpy as np

SUDOKU_CONVENTION = "blank_cells"
MAZE_OPT_TOL = 1.05


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def sudoku_metrics(preds, puzzles, solutions) -> dict:
    """preds, puzzles, solutions: [N, 81] digits (puzzles 0 = blank) → the module's metrics,
    plus the counts ``n_puzzles``, ``n_blanks`` and the ``convention`` name."""
    preds, puzzles, solutions = (_np(a).astype(np.int64) for a in (preds, puzzles, solutions))
    if not preds.shape == puzzles.shape == solutions.shape or preds.ndim != 2:
        raise ValueError(
            f"preds {preds.shape}, puzzles {puzzles.shape} and solutions {solutions.shape} must be equal [N, 81]"
        )
    blank = puzzles == 0
    right = preds == solutions
    n_blanks = int(blank.sum())
    return {
        "cell_acc": float((right & blank).sum() / n_blanks) if n_blanks else float("nan"),
        "grid_acc": float((right | ~blank).all(1).mean()) if len(preds) else float("nan"),
        "cell_acc_all81": float(right.mean()) if right.size else float("nan"),
        "n_puzzles": int(len(preds)),
        "n_blanks": n_blanks,
        "convention": SUDOKU_CONVENTION,
    }


def candidate_uniform_acc(puzzles, solutions) -> float:
    """The floor a solver must beat beyond chance (1/9): the expected blank-cell accuracy of
    guessing uniformly among the digits the givens allow (not in the cell's row, column or
    box), pooled over blank cells as ``cell_acc`` is: mean of 1/|allowed| where the solution
    digit is allowed (always, for a valid puzzle), 0 where it is not."""
    puzzles, solutions = (_np(a).astype(np.int64).reshape(-1, 9, 9) for a in (puzzles, solutions))
    given = np.eye(10, dtype=bool)[puzzles][..., 1:]  # [N, 9, 9, 9]: digit d+1 given at the cell
    rows, cols = given.any(2, keepdims=True), given.any(1, keepdims=True)
    boxes = given.reshape(-1, 3, 3, 3, 3, 9).any((2, 4), keepdims=True)
    boxes = np.broadcast_to(boxes, (len(puzzles), 3, 3, 3, 3, 9)).reshape(-1, 9, 9, 9)
    allowed = ~(rows | cols | boxes)  # [N, 9, 9, 9]
    blank = puzzles == 0
    if not blank.any():
        return float("nan")
    truth = np.take_along_axis(allowed, (solutions - 1)[..., None].clip(0, 8), -1)[..., 0]
    per_cell = truth / np.maximum(allowed.sum(-1), 1)
    return float(per_cell[blank].mean())


def maze_metrics(reached, length, bfs_length, tol: float = MAZE_OPT_TOL) -> dict:
    """reached bool [N]; length, bfs_length cells [N] → acc, opt, exact_opt, the mean
    length ratio over reached mazes (nan if none), and ``n``."""
    reached = _np(reached).astype(bool)
    length, bfs = _np(length).astype(np.int64), _np(bfs_length).astype(np.int64)
    if not reached.shape == length.shape == bfs.shape or reached.ndim != 1:
        raise ValueError(f"reached {reached.shape}, length {length.shape}, bfs {bfs.shape} must be equal [N]")
    n = len(reached)
    ratio = length[reached] / bfs[reached]
    return {
        "acc": float(reached.mean()) if n else float("nan"),
        "opt": float((reached & (length <= tol * bfs + 1e-9)).mean()) if n else float("nan"),
        "exact_opt": float((reached & (length == bfs)).mean()) if n else float("nan"),
        "len_ratio": float(ratio.mean()) if len(ratio) else float("nan"),
        "n": n,
    }
