"""Sudoku data for the PoH-HRM (docs/studies.md: poh_injection) and energy-based solver (§4) studies.

One array layout for every source, so models never see a CSV: a dict with
`puzzles` uint8 [N, 81] (row-major, 0 = blank), `solutions` uint8 [N, 81] (digits 1-9),
`givens` uint8 [N] and `rating` int32 [N] (the file's rating, the solver's guess count for
generated puzzles, -1 where unknown). Sources:
- `generate`: offline unique-solution puzzles, skewed hard (<= 25 givens by default). A random
  full grid loses givens in random order while the solution stays unique; the result is
  minimal (or stops at `target_givens`) and is redrawn if it keeps more than `max_givens`.
  Each puzzle i has its own seed derived from (seed, i), so results do not depend on `workers`.
- `load_csv`: the Sudoku-Extreme CSV (source, question, answer, rating; '.' blank) and the
  Kaggle/Enso CSV (puzzle, solution; '0' or '.' blank), validated row by row.
Plus validity-preserving augmentation (identical on puzzle and solution), a validity check,
a canonical form up to digit relabelling and transpose, a seeded train/val split disjoint
under it, and the source's train-file / test-file protocol (`file_splits`).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from studies.data import sudoku_solver

_ROWS = np.arange(81).reshape(9, 9)
_BOXES = np.array([[(b // 3 * 3 + i // 3) * 9 + b % 3 * 3 + i % 3 for i in range(9)] for b in range(9)])
UNITS = np.concatenate([_ROWS, _ROWS.T, _BOXES])  # [27, 9] cell indices of rows, columns, boxes
UNITS.setflags(write=False)


# ---------------------------------------------------------------------------- generation
def puzzle_seed(seed: int, index: int) -> int:
    """The seed of puzzle `index` in a run with `seed` (independent of worker count)."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint64)[0])


def generate_one(seed: int, max_givens: int = 25, target_givens: int = 0, min_guesses: int = 0):
    """One unique-solution puzzle: (puzzle, solution, givens, guesses, attempts).

    Removes givens in a random order, keeping a removal only if no other solution appears,
    until `target_givens` remain or no given can go (a minimal puzzle). Redraws the full grid
    while the result keeps more than `max_givens` givens or the solver needs fewer than
    `min_guesses` guesses (counted while proving uniqueness) to rate it.
    """
    if max_givens < 17 or target_givens > max_givens:
        raise ValueError(
            f"need 17 <= max_givens and target_givens <= max_givens, got "
            f"max_givens={max_givens}, target_givens={target_givens}"
        )
    rng = random.Random(seed)
    attempts = 0
    while True:
        attempts += 1
        solution = sudoku_solver.random_full_grid(rng)
        puzzle = solution.copy()
        givens = 81
        for cell in rng.sample(range(81), 81):  # removal order
            if givens <= target_givens:
                break
            if not sudoku_solver.has_other_solution(puzzle, cell, solution[cell]):
                puzzle[cell] = 0
                givens -= 1
        if givens <= max_givens:
            guesses = sudoku_solver.search(puzzle, 2).guesses
            if guesses >= min_guesses:
                return puzzle, solution, givens, guesses, attempts


def _generate_job(job):
    return generate_one(*job)


def generate(
    n: int,
    seed: int,
    max_givens: int = 25,
    target_givens: int = 0,
    min_guesses: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """`n` unique-solution puzzles as arrays (see module docstring), plus `attempts` [N]
    (full grids drawn per kept puzzle). ~40 puzzles/s per worker at the defaults."""
    from studies.progress import progress_bar

    jobs = [(puzzle_seed(seed, i), max_givens, target_givens, min_guesses) for i in range(n)]
    bar = progress_bar(n, f"sudoku <= {max_givens} givens", enabled=progress, iterate=False, unit="puzzles")
    rows = []
    if workers > 1:
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            for row in pool.imap(_generate_job, jobs, chunksize=8):  # ordered: i-th is job i
                rows.append(row)
                bar.update(1)
    else:
        for row in map(_generate_job, jobs):
            rows.append(row)
            bar.update(1)
    bar.close()
    return {
        "puzzles": np.array([r[0] for r in rows], dtype=np.uint8).reshape(n, 81),
        "solutions": np.array([r[1] for r in rows], dtype=np.uint8).reshape(n, 81),
        "givens": np.array([r[2] for r in rows], dtype=np.uint8),
        "rating": np.array([r[3] for r in rows], dtype=np.int32),
        "attempts": np.array([r[4] for r in rows], dtype=np.int32),
    }


# ---------------------------------------------------------------------------- CSV loading
_CHAR = np.full(256, 255, dtype=np.uint8)  # byte -> digit; 255 = not allowed
_CHAR[ord("0") : ord("9") + 1] = np.arange(10)
_CHAR[ord(".")] = 0
_CHAR.setflags(write=False)
_FORMATS = {"extreme": ("question", "answer", "rating"), "enso": ("puzzle", "solution", None)}


def load_csv(path, fmt: str = "auto") -> dict[str, np.ndarray]:
    """Read a Sudoku-Extreme (`fmt="extreme"`) or Kaggle/Enso (`"enso"`) CSV into arrays.

    "auto" picks by header. Raises ValueError naming the file and the row (0-based data row
    and file line) for a row with the wrong number of fields, a string that is not 81 chars,
    a bad character, a rating that is not an integer, a blank or invalid solution, or a
    solution that disagrees with the puzzle's givens.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    with open(path) as f:
        header = [h.strip().strip('"') for h in f.readline().split(",")]
    if fmt == "auto":
        fmt = "extreme" if "question" in header else "enso"
    if fmt not in _FORMATS:
        raise ValueError(f"unknown Sudoku CSV format {fmt!r}; expected one of {list(_FORMATS)}")
    q_col, a_col, r_col = _FORMATS[fmt]
    missing = [c for c in (q_col, a_col, r_col) if c and c not in header]
    if missing:
        raise ValueError(f"{path}: format {fmt!r} needs columns {missing}; header is {header}")
    cols = [c for c in (q_col, a_col, r_col) if c]
    bad_rows = []

    def invalid(row):  # single-threaded reading numbers the rows (file lines, 1-based)
        bad_rows.append(row)
        return "error"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(include_columns=cols, column_types=dict.fromkeys(cols, pa.string())),
        )
    except pa.ArrowInvalid:
        if not bad_rows:
            raise
        row = bad_rows[0]
        _bad(str(path), row.number - 2, f"has {row.actual_columns} fields, expected {row.expected_columns}")
    puzzles = _digits(table.column(q_col), f"{path}: column {q_col!r}")
    solutions = _digits(table.column(a_col), f"{path}: column {a_col!r}")
    rating = np.full(len(puzzles), -1, dtype=np.int32)
    if r_col:
        text = table.column(r_col).to_numpy(zero_copy_only=False)
        ok = np.array([str(v).lstrip("-").isdigit() for v in text], dtype=bool)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            _bad(f"{path}: column {r_col!r}", i, f"rating {text[i]!r} is not an integer")
        rating = text.astype(np.int64).astype(np.int32)
    check_pairs(puzzles, solutions, where=str(path))
    return {
        "puzzles": puzzles,
        "solutions": solutions,
        "givens": (puzzles > 0).sum(1).astype(np.uint8),
        "rating": rating,
    }


def _digits(column, where: str) -> np.ndarray:
    """uint8 [N, 81] from an arrow string column of 81-char grids, read straight from buffers."""
    out, start = [], 0
    for chunk in column.chunks:
        n = len(chunk)
        if chunk.null_count:
            _bad(where, start + int(np.flatnonzero(chunk.is_null().to_numpy(False))[0]), "is empty")
        offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset : chunk.offset + n + 1]
        lengths = np.diff(offsets)
        if (lengths != 81).any():
            i = int(np.flatnonzero(lengths != 81)[0])
            _bad(where, start + i, f"has {lengths[i]} chars, expected 81")
        raw = np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        grid = _CHAR[raw].reshape(n, 81)
        if (grid == 255).any():
            i = int(np.flatnonzero((grid == 255).any(1))[0])
            _bad(where, start + i, "has a character other than 0-9 or '.'")
        out.append(grid)
        start += n
    return np.concatenate(out) if out else np.zeros((0, 81), np.uint8)


def _bad(where: str, row: int, what: str):
    raise ValueError(f"{where}: row {row} (file line {row + 2}) {what}")


def check_pairs(puzzles: np.ndarray, solutions: np.ndarray, where: str = "data") -> None:
    """Raise ValueError naming the first row whose solution is invalid or contradicts a given."""
    full = (solutions > 0).all(1)
    valid = is_valid_solution(solutions)
    agrees = ((puzzles == 0) | (puzzles == solutions)).all(1)
    for ok, what in (
        (full, "solution has a blank"),
        (valid, "solution breaks a Sudoku rule"),
        (agrees, "solution disagrees with a given of the puzzle"),
    ):
        if not ok.all():
            _bad(where, int(np.flatnonzero(~ok)[0]), what)


# ---------------------------------------------------------------------------- checks
def is_valid_solution(grid):
    """True where a grid [..., 81] is a complete valid Sudoku (bool, or bool array [...])."""
    g = np.asarray(grid).astype(np.int64)
    onehot = np.where((g >= 1) & (g <= 9), 1 << np.clip(g, 0, 9), 0)  # bit d for digit d
    seen = np.bitwise_or.reduce(onehot[..., UNITS], axis=-1)  # [..., 27]
    ok = (seen == 0x3FE).all(-1)  # every unit holds all of 1..9, hence each once
    return bool(ok) if ok.ndim == 0 else ok


def to_string(grid, blank: str = ".") -> str:
    """81-char row-major string of a grid, `blank` for 0."""
    return "".join(blank if v == 0 else str(int(v)) for v in np.asarray(grid).reshape(-1))


# ---------------------------------------------------------------------------- augmentation
def _perms(rng: np.random.Generator, shape) -> np.ndarray:
    return np.argsort(rng.random(shape), axis=-1)  # independent random permutations


def augment_indices(batch: int, rng: np.random.Generator):
    """Random symmetries for `batch` grids: (pos [B, 81], digit_map [B, 10]).

    Apply as out[b, k] = digit_map[b, x[b, pos[b, k]]]. pos composes a band order, a row order
    within each band, a stack order, a column order within each stack and a transpose with
    p 1/2; digit_map relabels 1-9 and keeps 0 (blank) fixed. All preserve Sudoku validity.
    """
    rows = (3 * _perms(rng, (batch, 3))[:, :, None] + _perms(rng, (batch, 3, 3))).reshape(batch, 9)
    cols = (3 * _perms(rng, (batch, 3))[:, :, None] + _perms(rng, (batch, 3, 3))).reshape(batch, 9)
    pos = rows[:, :, None] * 9 + cols[:, None, :]  # [B, 9, 9]
    flip = rng.random(batch) < 0.5
    pos = np.where(flip[:, None, None], pos.transpose(0, 2, 1), pos).reshape(batch, 81)
    digit_map = np.concatenate([np.zeros((batch, 1), np.int64), _perms(rng, (batch, 9)) + 1], 1)
    return pos, digit_map


def augment(puzzles, solutions, rng: np.random.Generator):
    """Apply one random symmetry per row, the same to puzzle and solution.

    Works on numpy arrays or torch tensors, [B, 81] or a single [81]; returns the same kind.
    """
    single = puzzles.ndim == 1
    if single:
        puzzles, solutions = puzzles[None], solutions[None]
    pos, digit_map = augment_indices(puzzles.shape[0], rng)
    out = tuple(_apply(x, pos, digit_map) for x in (puzzles, solutions))
    return (out[0][0], out[1][0]) if single else out


def _apply(x, pos, digit_map):
    if isinstance(x, np.ndarray):
        moved = np.take_along_axis(x, pos, axis=1)
        return np.take_along_axis(digit_map, moved.astype(np.int64), axis=1).astype(x.dtype)
    # torch, without importing it here; new_tensor casts to x's dtype, and pos < 81 fits any
    moved = x.gather(1, x.new_tensor(pos).long())
    return x.new_tensor(digit_map).long().gather(1, moved.long()).to(x.dtype)


# ---------------------------------------------------------------------------- splits
def subset(data: dict, idx) -> dict:
    """Rows `idx` of every per-puzzle array in `data`."""
    n = len(data["puzzles"])
    return {k: (v[idx] if isinstance(v, np.ndarray) and len(v) == n else v) for k, v in data.items()}


def _relabel(puzzles: np.ndarray) -> np.ndarray:
    """Digits renamed 1, 2, ... in order of first appearance (row-major); 0 stays blank."""
    rows = np.arange(len(puzzles))[:, None]
    present = puzzles[:, :, None] == np.arange(1, 10, dtype=np.uint8)  # [N, 81, 9]
    first = np.where(present.any(1), present.argmax(1), 81)  # [N, 9] first cell of digit d+1
    label = np.empty((len(puzzles), 9), np.uint8)
    label[rows, np.argsort(first, axis=1, kind="stable")] = np.arange(1, 10, dtype=np.uint8)
    mapping = np.concatenate([np.zeros((len(puzzles), 1), np.uint8), label], 1)  # [N, 10]
    return np.take_along_axis(mapping, puzzles.astype(np.int64), axis=1).astype(np.uint8)


def canonical(puzzles, chunk: int = 65536) -> np.ndarray:
    """One representative per class of grids equal up to a digit relabelling and a transpose:
    the smaller (lexicographically) of the grid and its transpose, each with digits renamed in
    order of first appearance. Two grids have the same canonical form iff one maps to the
    other by those symmetries (the training augmentation's relabelling and transpose), which
    is how splits are kept disjoint beyond exact matches."""
    p = np.asarray(puzzles, dtype=np.uint8).reshape(-1, 81)
    out = np.empty_like(p)
    for lo in range(0, len(p), chunk):  # [chunk, 81, 9] booleans at a time
        block = p[lo : lo + chunk]
        a = _relabel(block)
        b = _relabel(block.reshape(-1, 9, 9).transpose(0, 2, 1).reshape(-1, 81))
        diff = a != b
        first = diff.argmax(1)
        rows = np.arange(len(block))
        take_b = diff.any(1) & (b[rows, first] < a[rows, first])
        out[lo : lo + chunk] = np.where(take_b[:, None], b, a)
    return out


def _row_keys(puzzles: np.ndarray) -> np.ndarray:
    """Hashable per-row keys of the canonical forms."""
    p = np.ascontiguousarray(canonical(puzzles))
    return p.view(np.dtype((np.void, 81))).ravel()


def split(
    data: dict,
    val_frac: float = 0.1,
    n: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
    n_val: int | None = None,
) -> tuple[dict, dict]:
    """Seeded train/val split with no puzzle in both, even up to relabelling and transpose.

    Drops duplicate puzzles (same canonical form, keeping the first) and any puzzle whose
    canonical form is in `exclude` (e.g. the test file or held-out interpretability puzzles),
    shuffles with `seed`, keeps the first `n` (all if None), and makes the last `n_val` rows
    (default round(val_frac * kept)) the val split.
    """
    keys = _row_keys(data["puzzles"])
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(first)
    if exclude is not None and len(exclude):
        keep = keep[~np.isin(keys[keep], _row_keys(np.asarray(exclude).reshape(-1, 81)))]
    order = np.random.default_rng(seed).permutation(keep)
    if n is not None:
        if n > len(order):
            raise ValueError(f"asked for n={n} puzzles but only {len(order)} distinct remain")
        order = order[:n]
    n_val = round(len(order) * val_frac) if n_val is None else n_val
    if not 0 <= n_val < len(order):
        raise ValueError(f"n_val={n_val} must be in [0, {len(order)}): the val split is part of the {len(order)} kept")
    cut = len(order) - n_val
    return subset(data, order[:cut]), subset(data, order[cut:])


def file_splits(train_file: dict, test_file: dict, n: int, n_val: int, n_test: int, seed: int):
    """(train, val, test) from a train file and a separate official test file (docs/studies.md: poh_injection and the energy-based solver).

    The source's protocol, with its missing seed made a param: `n` puzzles subsampled from the
    train file by a seeded shuffle (after dropping duplicates and anything equivalent to a test
    puzzle), the last `n_val` of them = val; the test file whole (`n_test` 0) or capped to a
    seeded subsample of `n_test` rows (in file order), drawn from a stream of its own so the
    cap never moves the train subsample.
    """
    test = test_file
    if n_test:
        if n_test > len(test_file["puzzles"]):
            raise ValueError(f"n_test={n_test} exceeds the test file's {len(test_file['puzzles'])} puzzles")
        pick = np.random.default_rng((seed, 1)).choice(len(test_file["puzzles"]), n_test, replace=False)
        test = subset(test_file, np.sort(pick))
    train, val = split(train_file, n=n, n_val=n_val, seed=seed, exclude=test_file["puzzles"])
    return train, val, test
