"""Maze generators, BFS paths, pixel images and datasets of studies.data.mazes."""

import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest

from studies.data import mazes
from studies.data.mazes import E, N, S, W

# 3x3 serpentine by hand: 0 -> 1 -> 2, down to 5 -> 4 -> 3, down to 6 -> 7 -> 8.
SERPENTINE = np.array([E, E | W, W | S, E | S, E | W, N | W, N | E, E | W, W], dtype=np.uint8)
# 3x3 with every interior wall open (not a perfect maze: many routes between two cells).
OPEN_3x3 = np.array(
    [E | S, E | S | W, S | W, N | E | S, N | E | S | W, N | S | W, N | E, N | E | W, N | W],
    dtype=np.uint8,
)


@pytest.fixture(scope="module", params=["dfs", "wilson"])
def dataset(request):
    return mazes.generate_dataset(40, 7, request.param, seed=5, min_path_frac=0.3)


def passages(walls):
    return sum(bin(int(w)).count("1") for w in walls) // 2


# ---------------------------------------------------------------------------- generators
@pytest.mark.parametrize("algorithm", sorted(mazes.ALGORITHMS))
@pytest.mark.parametrize("n", [2, 5, 9])
def test_generators_make_perfect_symmetric_mazes(algorithm, n):
    rng = random.Random(n)
    for _ in range(5):
        walls = mazes.ALGORITHMS[algorithm](n, rng)
        assert walls.shape == (n * n,) and walls.dtype == np.uint8
        assert passages(walls) == n * n - 1  # spanning tree: n^2 - 1 edges ...
        assert (mazes.bfs_distances(walls, 0) >= 0).all()  # ... and connected
        grid = walls.reshape(n, n)
        assert ((grid[:, :-1] & E > 0) == (grid[:, 1:] & W > 0)).all()
        assert ((grid[:-1, :] & S > 0) == (grid[1:, :] & N > 0)).all()
        assert not (grid[0] & N).any() and not (grid[-1] & S).any()  # border stays closed
        assert not (grid[:, 0] & W).any() and not (grid[:, -1] & E).any()


def test_neighbors_and_neighbor_table_agree():
    walls = mazes.dfs_maze(6, random.Random(0))
    table = mazes.neighbor_table(walls[None])[0]
    for cell in range(36):
        assert mazes.neighbors(walls, cell) == [int(x) for x in table[cell] if x >= 0]
    assert mazes.neighbors(SERPENTINE, 4) == [5, 3]  # E then W
    assert mazes.neighbors(OPEN_3x3, 4) == [1, 5, 7, 3]


# ---------------------------------------------------------------------------- BFS
def test_bfs_on_hand_built_mazes():
    assert mazes.shortest_path(SERPENTINE, 0, 8) == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    assert mazes.bfs_distances(SERPENTINE, 0).tolist() == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    path = mazes.shortest_path(OPEN_3x3, 0, 8)
    assert len(path) == 5 and mazes.is_valid_path(OPEN_3x3, path)  # 4 moves, Manhattan
    walled = SERPENTINE.copy()
    walled[[2, 5]] = [W, W]  # cut 2 <-> 5: cells 5.. are no longer reachable from 0
    assert mazes.shortest_path(walled, 0, 8) == []
    assert mazes.bfs_distances(walled, 0).tolist()[:3] == [0, 1, 2]


def test_moves_round_trip_and_tokens():
    path = mazes.shortest_path(SERPENTINE, 0, 8)
    moves = mazes.path_to_moves(path, 3)
    assert "".join(mazes.MOVES[m] for m in moves) == "EESWWSEE"
    assert mazes.moves_to_path(0, moves, 3) == path
    assert not mazes.is_valid_path(SERPENTINE, [0, 3])  # wall between 0 and 3


# ---------------------------------------------------------------------------- dataset
def test_dataset_paths_are_valid_shortest_and_long_enough(dataset):
    k, need = dataset["n_kept"], dataset["min_path_cells"]
    assert k == 40 and need == int(0.3 * 49) and dataset["n_tried"] >= k
    for i in range(k):
        walls, length = dataset["walls"][i], dataset["path_len"][i]
        path = dataset["path"][i, :length].tolist()
        assert (dataset["path"][i, length:] == -1).all() and length >= need
        assert path[0] == dataset["start"][i] and path[-1] == dataset["goal"][i]
        assert path[0] != path[-1] and mazes.is_valid_path(walls, path)
        assert length - 1 == mazes.bfs_distances(walls, path[0])[path[-1]]
        moves = dataset["moves"][i]
        assert (moves[length - 1 :] == -1).all()
        assert mazes.moves_to_path(path[0], moves[: length - 1], 7) == path
        assert passages(walls) == 48


def test_pixel_image_matches_wall_bits(dataset):
    images = mazes.to_image(dataset["walls"])
    assert images.shape == (40, 15, 15) and images.dtype == np.uint8
    for walls, img in zip(dataset["walls"][:5], images[:5], strict=True):
        assert (img[0] == 1).all() and (img[-1] == 1).all()
        assert (img[:, 0] == 1).all() and (img[:, -1] == 1).all()
        assert (img[::2, ::2] == 1).all() and (img[1::2, 1::2] == 0).all()
        for r, c in itertools.product(range(7), repeat=2):
            w = int(walls[r * 7 + c])
            assert img[2 * r + 1, 2 * c + 2] == (not w & E)
            assert img[2 * r + 2, 2 * c + 1] == (not w & S)
            assert img[2 * r, 2 * c + 1] == (not w & N)
            assert img[2 * r + 1, 2 * c] == (not w & W)
    assert (mazes.to_image(dataset["walls"][0]) == images[0]).all()


def test_dataset_is_deterministic_for_a_seed():
    a = mazes.generate_dataset(5, 6, "dfs", seed=11, min_path_frac=0.4)
    b = mazes.generate_dataset(5, 6, "dfs", seed=11, min_path_frac=0.4)
    c = mazes.generate_dataset(5, 6, "dfs", seed=12, min_path_frac=0.4)
    for key in ("walls", "start", "goal", "path", "moves"):
        assert (a[key] == b[key]).all()
    assert a["n_tried"] == b["n_tried"]
    assert not (a["walls"] == c["walls"]).all()


def test_filter_counts_and_shortfall_are_recorded():
    everything = mazes.generate_dataset(10, 5, "dfs", seed=0, min_path_frac=0.0)
    assert everything["n_tried"] == everything["n_kept"] == 10
    impossible = mazes.generate_dataset(3, 4, "dfs", seed=0, min_path_frac=1.01, max_tries=20)
    assert impossible["n_kept"] == 0 and impossible["n_tried"] == 20
    assert impossible["walls"].shape == (0, 16)


def test_farthest_endpoints_span_the_maze_diameter():
    rng = random.Random(3)
    walls = mazes.wilson_maze(6, rng)
    diameter = max(mazes.bfs_distances(walls, s).max() for s in range(36))
    start, goal = mazes.choose_endpoints(walls, rng, "farthest")
    assert mazes.bfs_distances(walls, start)[goal] == diameter
    with pytest.raises(ValueError, match="endpoint mode"):
        mazes.choose_endpoints(walls, rng, "corners")


# ---------------------------------------------------------------------------- maze-dataset
def as_connection_list(walls, n):
    grid = np.asarray(walls).reshape(n, n)
    return np.stack([(grid & S) > 0, (grid & E) > 0])  # [0] down, [1] right


def test_from_maze_dataset_converts_connection_lists(dataset):
    fakes = [
        SimpleNamespace(
            connection_list=as_connection_list(dataset["walls"][i], 7),
            solution=np.array([divmod(int(c), 7) for c in dataset["path"][i, : dataset["path_len"][i]]]),
        )
        for i in range(5)
    ]
    out = mazes.from_maze_dataset(fakes)
    assert (out["walls"] == dataset["walls"][:5]).all()
    assert (out["start"] == dataset["start"][:5]).all() and (out["goal"] == dataset["goal"][:5]).all()
    assert (out["path_len"] == dataset["path_len"][:5]).all()


def test_generate_with_maze_dataset_package():
    pytest.importorskip("maze_dataset", reason='optional: pip install maze-dataset "muutils<0.9"')
    out = mazes.generate_with_maze_dataset(4, 5, seed=0, min_path_frac=0.2)
    assert out["n_kept"] == len(out["walls"]) > 0
    for walls, path, length in zip(out["walls"], out["path"], out["path_len"], strict=True):
        assert passages(walls) == 24 and length >= out["min_path_cells"]
        assert mazes.shortest_path(walls, int(path[0]), int(path[length - 1])) == path[:length].tolist()
