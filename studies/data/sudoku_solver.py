"""Exact 9x9 Sudoku solver that counts solutions and reports its search effort.

Why it exists: the unique-solution generator (`sudoku.generate`) asks "is this still unique?"
about 60 times per puzzle, the tests check augmented puzzles for uniqueness, and the number
of guesses a propagating solver needs is the difficulty signal stored next to each puzzle.

Method: candidates are 9-bit masks (bit d-1 = digit d possible), one per cell. Propagation
alternates naked singles (a cell with one candidate removes it from its 20 peers) and hidden
singles (a digit with one place in a row, column or box goes there) until nothing changes;
then the search branches on the open cell with the fewest candidates (MRV). Effort counts
`guesses` (branch points with more than one candidate) and `nodes` (propagated states). Pure
Python: ~1 ms for an easy puzzle, tens of ms for a 17-clue one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ALL = 0x1FF  # all nine candidates


def _tables():
    rows = [[r * 9 + c for c in range(9)] for r in range(9)]
    cols = [[r * 9 + c for r in range(9)] for c in range(9)]
    boxes = [[(br * 3 + i) * 9 + bc * 3 + j for i in range(3) for j in range(3)] for br in range(3) for bc in range(3)]
    units = tuple(tuple(u) for u in rows + cols + boxes)
    peers = tuple(tuple(sorted({p for u in units if i in u for p in u} - {i})) for i in range(81))
    return units, peers


UNITS, PEERS = _tables()  # 27 units of 9 cells; 20 peers per cell (constants, never mutated)
BITS = tuple(tuple(1 << d for d in range(9) if m >> d & 1) for m in range(512))  # mask -> bits
DIGIT = {1 << d: d + 1 for d in range(9)}  # single-bit mask -> digit


@dataclass(frozen=True)
class SearchResult:
    """Outcome of `search`: solutions found (capped at the limit) and the effort spent."""

    count: int  # number of solutions found, at most `limit`
    solution: list[int] | None  # first solution found, 81 digits 1-9, or None
    guesses: int  # branch points with >= 2 candidates (the difficulty signal)
    nodes: int  # propagated search states, the root included


def to_cells(grid) -> list[int]:
    """81 ints 0-9 (0 = blank) from a string ('.' or '0' blank), a 9x9 or flat array, or a list."""
    if isinstance(grid, str):
        cells = [0 if ch in ".0" else int(ch) for ch in grid.strip()]
    else:
        cells = [int(v) for v in _flatten(grid)]
    if len(cells) != 81 or any(v < 0 or v > 9 for v in cells):
        raise ValueError(f"a Sudoku grid needs 81 values in 0-9, got {len(cells)} values")
    return cells


def _flatten(grid):
    if hasattr(grid, "reshape"):
        return grid.reshape(-1).tolist()
    out = []
    for v in grid:
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    return out


def _propagate(cand: list[int], queue: list[int]) -> bool:
    """Apply naked and hidden singles in place until a fixpoint; False on a contradiction.

    `queue` holds cells whose single candidate has not yet been removed from their peers.
    """
    while True:
        while queue:
            i = queue.pop()
            b = cand[i]
            for p in PEERS[i]:
                m = cand[p]
                if m & b:
                    m ^= b
                    if not m:
                        return False
                    cand[p] = m
                    if not m & (m - 1):
                        queue.append(p)
        for unit in UNITS:  # hidden singles
            once = twice = 0
            for i in unit:
                m = cand[i]
                twice |= once & m
                once |= m
            if once != ALL:
                return False  # some digit has no place left in this unit
            only = once & ~twice
            if only:
                for i in unit:
                    m = cand[i]
                    x = m & only
                    if x and x != m:
                        if x & (x - 1):
                            return False  # two digits need this same cell
                        cand[i] = x
                        queue.append(i)
        if not queue:
            return True


def _initial(cells: list[int], forbid) -> tuple[list[int], list[int]]:
    cand = [ALL if v == 0 else 1 << (v - 1) for v in cells]
    for i, d in forbid:
        cand[i] &= ~(1 << (d - 1))
    queue = [i for i, v in enumerate(cells) if v]
    queue += [i for i, _ in forbid if cand[i] and not cand[i] & (cand[i] - 1) and not cells[i]]
    return cand, queue


def search(grid, limit: int = 2, *, rng: random.Random | None = None, forbid=()) -> SearchResult:
    """Find up to `limit` solutions of `grid` by propagation + MRV backtracking.

    rng: if given, candidate digits are tried in random order (used to draw random full grids).
    forbid: (cell, digit) pairs removed from the candidates before solving, e.g. to ask whether
    a puzzle has a solution *other than* a known one at some cell.
    """
    cells = to_cells(grid)
    cand, queue = _initial(cells, forbid)
    if any(m == 0 for m in cand):
        return SearchResult(0, None, 0, 1)
    stats = [0, 0]  # guesses, nodes
    found: list[list[int]] = []
    _solve(cand, queue, limit, rng, stats, found)
    solution = [DIGIT[m] for m in found[0]] if found else None
    return SearchResult(len(found), solution, stats[0], stats[1])


def _solve(cand, queue, limit, rng, stats, found) -> None:
    stats[1] += 1
    if not _propagate(cand, queue):
        return
    best, best_n = -1, 10
    for i in range(81):
        m = cand[i]
        if m & (m - 1):
            n = len(BITS[m])
            if n < best_n:
                best, best_n = i, n
                if n == 2:
                    break
    if best < 0:
        found.append(cand)
        return
    stats[0] += 1
    bits = list(BITS[cand[best]])
    if rng is not None:
        rng.shuffle(bits)
    for b in bits:
        child = cand.copy()
        child[best] = b
        _solve(child, [best], limit, rng, stats, found)
        if len(found) >= limit:
            return


def count_solutions(grid, limit: int = 2) -> int:
    """Number of solutions of `grid`, counted up to `limit` (0 = contradictory)."""
    return search(grid, limit).count


def solve(grid) -> list[int] | None:
    """One solution of `grid` as 81 digits 1-9, or None if it has none."""
    return search(grid, 1).solution


def is_unique(grid) -> bool:
    """True if `grid` has exactly one solution."""
    return search(grid, 2).count == 1


def random_full_grid(rng: random.Random) -> list[int]:
    """A random complete valid grid: the empty grid solved with randomly ordered branching."""
    return search([0] * 81, 1, rng=rng).solution


def has_other_solution(puzzle, cell: int, digit: int) -> bool:
    """With `cell` blanked, can `puzzle` be solved with a digit other than `digit` there?

    The generator's uniqueness test when removing a given from a unique puzzle: cheaper than
    counting to 2, since the search stops at the first alternative and never has to re-find
    the known solution.
    """
    cells = to_cells(puzzle)
    cells[cell] = 0
    return search(cells, 1, forbid=((cell, digit),)).count > 0
