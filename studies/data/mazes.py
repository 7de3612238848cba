"""Perfect mazes with long shortest paths, for the PoH-HRM vs baseline scaling study (§3).

Cells of an n x n lattice are indexed r * n + c; walls are per-cell bits saying which sides
are *open*, N=1 E=2 S=4 W=8 (uint8 [n*n]); `to_image` gives the (2n+1)^2 pixel grid (1 = wall)
for the CNN encoder. Generators: the plan's DFS recursive backtracker (long corridors) and
Wilson's algorithm (uniform spanning tree, shorter paths); both make perfect mazes, so the
BFS shortest path between two cells is the only path.

`generate_dataset` draws a maze and a random distinct start/goal pair (as maze-dataset, which
the source used, does) or a farthest pair, keeps it only if its path has >= floor(min_path_frac
* n^2) cells, and records how many were tried and kept (the source recorded the requested
count). `from_maze_dataset` converts maze-dataset mazes (that package needs muutils<0.9).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from functools import lru_cache

import numpy as np

N, E, S, W = 1, 2, 4, 8
MOVES = "NESW"  # move token k goes in direction MOVES[k]
_STEP = ((N, -1, 0, S), (E, 0, 1, W), (S, 1, 0, N), (W, 0, -1, E))  # bit, dr, dc, opposite bit


def side(cells: int) -> int:
    """n for a maze of `cells` = n*n cells."""
    n = math.isqrt(cells)
    if n * n != cells:
        raise ValueError(f"walls must hold n*n cells, got {cells}")
    return n


@lru_cache(maxsize=8)
def lattice(n: int) -> tuple:
    """Per cell, (bit, neighbour cell, opposite bit) for each in-bounds side, N E S W order.

    Cached: a pure function of n that every generator, BFS and `neighbors` call reads.
    """

    def sides(r: int, c: int) -> tuple:
        return tuple(
            (bit, (r + dr) * n + c + dc, opp) for bit, dr, dc, opp in _STEP if 0 <= r + dr < n and 0 <= c + dc < n
        )

    return tuple(sides(*divmod(cell, n)) for cell in range(n * n))


def dfs_maze(n: int, rng: random.Random) -> np.ndarray:
    """Recursive-backtracker maze (iterative, explicit stack) from a random start cell."""
    adj = lattice(n)
    walls = [0] * (n * n)
    start = rng.randrange(n * n)
    visited = {start}
    stack = [start]
    while stack:
        cell = stack[-1]
        options = [x for x in adj[cell] if x[1] not in visited]
        if not options:
            stack.pop()
            continue
        bit, nxt, opp = rng.choice(options)
        walls[cell] |= bit
        walls[nxt] |= opp
        visited.add(nxt)
        stack.append(nxt)
    return np.array(walls, dtype=np.uint8)


def wilson_maze(n: int, rng: random.Random) -> np.ndarray:
    """Wilson's algorithm: loop-erased random walks give a uniformly random spanning tree."""
    adj = lattice(n)
    walls = [0] * (n * n)
    in_tree = [False] * (n * n)
    in_tree[rng.randrange(n * n)] = True
    exit_via = [None] * (n * n)  # last step taken from each cell on the current walk
    for first in rng.sample(range(n * n), n * n):  # every cell, in random order
        cell = first
        while not in_tree[cell]:  # walk; overwriting exit_via erases loops
            exit_via[cell] = rng.choice(adj[cell])
            cell = exit_via[cell][1]
        cell = first
        while not in_tree[cell]:  # carve the loop-erased path into the tree
            bit, nxt, opp = exit_via[cell]
            walls[cell] |= bit
            walls[nxt] |= opp
            in_tree[cell] = True
            cell = nxt
    return np.array(walls, dtype=np.uint8)


ALGORITHMS = {"dfs": dfs_maze, "wilson": wilson_maze}


def neighbors(walls, cell: int) -> list[int]:
    """Cells reachable from `cell` in one move (open side, in bounds), in N, E, S, W order."""
    w = int(walls[cell])
    return [nxt for bit, nxt, _ in lattice(side(len(walls)))[cell] if w & bit]


def neighbor_table(walls) -> np.ndarray:
    """Per direction N, E, S, W the neighbour cell, or -1 if walled: int64 [..., n*n, 4].

    Vectorized over a batch of mazes [B, n*n]; the validity mask over next cells and the
    greedy roll-out both read it.
    """
    walls = np.asarray(walls)
    n = side(walls.shape[-1])
    cell = np.arange(n * n)
    r, c = cell // n, cell % n
    out = np.full((*walls.shape, 4), -1, dtype=np.int64)
    for k, (bit, dr, dc, _) in enumerate(_STEP):
        inside = (0 <= r + dr) & (r + dr < n) & (0 <= c + dc) & (c + dc < n)
        ok = ((walls & bit) > 0) & inside
        out[..., k] = np.where(ok, cell + dr * n + dc, -1)
    return out


def _bfs(walls, source: int, goal: int = -1) -> tuple[list[int], list[int]]:
    """BFS from `source`: (parent, distance) per cell, -1 where not reached; stops at `goal`."""
    adj, w = lattice(side(len(walls))), [int(v) for v in walls]
    parent, dist = [-1] * len(w), [-1] * len(w)
    parent[source], dist[source] = source, 0
    queue = deque([source])
    while queue and (goal < 0 or dist[goal] < 0):
        cell = queue.popleft()
        for bit, nxt, _ in adj[cell]:
            if w[cell] & bit and dist[nxt] < 0:
                parent[nxt], dist[nxt] = cell, dist[cell] + 1
                queue.append(nxt)
    return parent, dist


def bfs_distances(walls, source: int) -> np.ndarray:
    """Moves from `source` to every cell (-1 if unreachable): int64 [n*n]."""
    return np.array(_bfs(walls, source)[1], dtype=np.int64)


def shortest_path(walls, start: int, goal: int) -> list[int]:
    """BFS shortest path as cells [start, ..., goal]; [] if goal is unreachable."""
    parent, dist = _bfs(walls, start, goal)
    if dist[goal] < 0:
        return []
    path = [goal]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


def path_to_moves(path, n: int) -> list[int]:
    """Move tokens (0..3 = N, E, S, W) between consecutive cells of a path."""
    token = {-n: 0, 1: 1, n: 2, -1: 3}
    return [token[b - a] for a, b in itertools.pairwise(path)]


def moves_to_path(start: int, moves, n: int) -> list[int]:
    """Cells visited from `start` by move tokens (no wall check; see `is_valid_path`)."""
    delta = (-n, 1, n, -1)
    return list(itertools.accumulate((delta[int(m)] for m in moves), initial=start))


def is_valid_path(walls, path) -> bool:
    """True if every step of `path` goes through an open side to an in-bounds neighbour."""
    return all(b in neighbors(walls, a) for a, b in itertools.pairwise(path))


def to_image(walls) -> np.ndarray:
    """Pixel grid, 1 = wall, 0 = open: uint8 [..., 2n+1, 2n+1] (cell (r, c) at (2r+1, 2c+1))."""
    walls = np.asarray(walls)
    n = side(walls.shape[-1])
    cells = walls.reshape((*walls.shape[:-1], n, n))
    img = np.ones((*walls.shape[:-1], 2 * n + 1, 2 * n + 1), dtype=np.uint8)
    img[..., 1::2, 1::2] = 0
    img[..., 1::2, 2::2] = (cells & E) == 0  # between (r, c) and (r, c+1); last column: border
    img[..., 2::2, 1::2] = (cells & S) == 0  # between (r, c) and (r+1, c)
    return img


def choose_endpoints(walls, rng: random.Random, mode: str = "random") -> tuple[int, int]:
    """(start, goal): two random distinct cells, or "farthest" = ends of a longest path."""
    cells = len(walls)
    if mode == "random":
        return tuple(rng.sample(range(cells), 2))
    if mode == "farthest":  # in a tree, the farthest cell from anywhere ends a diameter
        a = int(np.argmax(bfs_distances(walls, rng.randrange(cells))))
        b = int(np.argmax(bfs_distances(walls, a)))
        return (a, b) if rng.random() < 0.5 else (b, a)
    raise ValueError(f"unknown endpoint mode {mode!r}; expected 'random' or 'farthest'")


def generate_dataset(
    n_mazes: int,
    n: int,
    algorithm: str = "dfs",
    seed: int = 0,
    min_path_frac: float = 0.4,
    endpoints: str = "random",
    max_tries: int | None = None,
    progress: bool = False,
) -> dict:
    """Draw mazes until `n_mazes` pass the path-length filter (or `max_tries`, default
    100 * n_mazes, run out: then fewer are returned and `n_kept` says so).

    Returns walls uint8 [K, n*n], start/goal int64 [K], path int64 [K, Lmax] (cells, padded
    with -1), path_len int64 [K], moves int64 [K, Lmax-1] (tokens, padded with -1), and the
    ints n, min_path_cells, n_tried, n_kept. Deterministic for a seed.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown maze algorithm {algorithm!r}; use one of {list(ALGORITHMS)}")
    from studies.progress import progress_bar

    make = ALGORITHMS[algorithm]
    rng = random.Random(seed)
    need = math.floor(min_path_frac * n * n)  # fewest path cells, start and goal included
    max_tries = 100 * n_mazes if max_tries is None else max_tries
    kept, tried = [], 0
    with progress_bar(n_mazes, f"mazes {n}x{n} {algorithm}", enabled=progress, iterate=False, unit="mazes") as bar:
        while len(kept) < n_mazes and tried < max_tries:
            tried += 1
            walls = make(n, rng)
            start, goal = choose_endpoints(walls, rng, endpoints)
            path = shortest_path(walls, start, goal)
            if len(path) >= need:
                kept.append((walls, path))
                bar.update(1)
    out = pack(n, [w for w, _ in kept], [p for _, p in kept])
    out.update(min_path_cells=need, n_tried=tried, n_kept=len(kept))
    return out


def pack(n: int, walls: list, paths: list) -> dict:
    """Arrays of `generate_dataset` from per-maze walls and start-to-goal cell paths."""
    k = len(paths)
    lmax = max((len(p) for p in paths), default=1)
    path = np.full((k, lmax), -1, dtype=np.int64)
    moves = np.full((k, max(lmax - 1, 0)), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        path[i, : len(p)] = p
        moves[i, : len(p) - 1] = path_to_moves(p, n)
    return {
        "walls": np.array(walls, dtype=np.uint8).reshape(k, n * n),
        "start": path[:, 0].copy(),
        "goal": np.array([p[-1] for p in paths], dtype=np.int64),
        "path": path,
        "path_len": np.array([len(p) for p in paths], dtype=np.int64),
        "moves": moves,
        "n": n,
    }


def from_maze_dataset(mazes) -> dict:
    """Arrays of `generate_dataset` from maze-dataset `SolvedMaze`s (or anything with a
    `connection_list` bool [2, n, n] — [0] = link down to (r+1, c), [1] = link right to
    (r, c+1) — and a `solution` [L, 2] of (row, col) from start to goal)."""
    walls, paths, n = [], [], None
    for m in mazes:
        links = np.asarray(m.connection_list, dtype=bool)
        n = links.shape[1]
        down, right = links[0, :-1, :], links[1, :, :-1]  # the last row/column stays closed
        w = np.zeros((n, n), dtype=np.int64)
        w[:-1, :] += down * S
        w[1:, :] += down * N
        w[:, :-1] += right * E
        w[:, 1:] += right * W
        walls.append(w.astype(np.uint8).reshape(-1))
        sol = np.asarray(m.solution).reshape(-1, 2)
        paths.append([int(r) * n + int(c) for r, c in sol])
    if n is None:
        raise ValueError("from_maze_dataset got no mazes")
    return pack(n, walls, paths)


def generate_with_maze_dataset(n_mazes: int, n: int, seed: int = 0, min_path_frac: float = 0.4):
    """The source's recipe: maze-dataset DFS mazes (3x requested), filtered by path length.

    Needs `pip install maze-dataset "muutils<0.9"`; returns the arrays plus n_tried, n_kept.
    """
    try:
        from maze_dataset import MazeDataset, MazeDatasetConfig
        from maze_dataset.generation import LatticeMazeGenerators
    except ImportError as err:
        raise ImportError('needs maze-dataset: pip install maze-dataset "muutils<0.9"') from err
    need, dfs = math.floor(min_path_frac * n * n), LatticeMazeGenerators.gen_dfs
    cfg = MazeDatasetConfig(name=f"dfs{n}", grid_n=n, n_mazes=3 * n_mazes, maze_ctor=dfs, seed=seed)
    data = MazeDataset.from_config(cfg, do_generate=True, load_local=False, save_local=False)
    kept = data.filter_by.path_length(min_length=need)
    out = from_maze_dataset(list(kept)[:n_mazes])
    out.update(min_path_cells=need, n_tried=3 * n_mazes, n_kept=min(len(kept), n_mazes))
    return out
