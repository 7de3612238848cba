"""Maze task: targets, the validity mask before smoothing, the entropy regulariser, the greedy
roll-out on hand-set score tables, disjoint splits, and a short training run."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from studies.data import mazes
from studies.poh.maze_models import MazeConfig, build_maze_model, valid_next_mask
from studies.poh.maze_task import (
    MazeTaskConfig,
    allowed_cells,
    as_tensors,
    evaluate_maze,
    greedy_rollout,
    horizon_targets,
    masked_smoothed_ce,
    maze_keys,
    maze_loss,
    random_rollout_floor,
    run_maze_cell,
    split_mazes,
)
from studies.poh.metrics import maze_metrics

NB, EB, SB, WB = 1, 2, 4, 8
# 0 1 2     edges 0-1 1-2 0-3 3-6 6-7 7-8 1-4 2-5: 4 and 5 are dead ends hanging off the top row
# 3 4 5
# 6 7 8
BRANCHY = [EB | SB, WB | EB | SB, WB | SB, NB | SB, NB, NB, NB | EB, WB | EB, WB]


def walls_from_path(n: int, cells) -> list[int]:
    walls = [0] * (n * n)
    step = {1: (EB, WB), -1: (WB, EB), n: (SB, NB), -n: (NB, SB)}
    for a, b in zip(cells, cells[1:], strict=False):
        here, there = step[b - a]
        walls[a] |= here
        walls[b] |= there
    return walls


def toward(walls, goal: int) -> torch.Tensor:
    """Score table [N, N]: 1 on every cell's BFS next hop toward ``goal``, 0 elsewhere."""
    N = len(walls)
    s = torch.zeros(N, N)
    for i in range(N):
        path = mazes.shortest_path(np.array(walls, np.uint8), i, goal)
        if len(path) > 1:
            s[i, path[1]] = 1.0
    return s


def roll(walls, scores, start, goal, n):
    w = torch.tensor([walls], dtype=torch.uint8)
    reached, length, trail = greedy_rollout(scores[None], w, torch.tensor([start]), torch.tensor([goal]), n)
    return bool(reached[0]), int(length[0]), [c for c in trail[0].tolist() if c >= 0]


def test_hand_maze_has_the_known_bfs_path():
    walls = np.array(BRANCHY, np.uint8)
    assert mazes.shortest_path(walls, 0, 8) == [0, 3, 6, 7, 8]
    assert mazes.shortest_path(walls, 4, 8) == [4, 1, 0, 3, 6, 7, 8]
    mask = valid_next_mask(torch.tensor([BRANCHY], dtype=torch.uint8), 3)[0]
    assert set(mask[1].nonzero().flatten().tolist()) == {0, 2, 4}


def test_rollout_reaches_the_goal_optimally():
    reached, length, trail = roll(BRANCHY, toward(BRANCHY, 8), 0, 8, 3)
    assert (reached, length, trail) == (True, 5, [0, 3, 6, 7, 8])


def test_rollout_detour_backtracks_through_visited_cells():
    scores = toward(BRANCHY, 8)
    scores[1, 4] = 5.0  # at cell 1, prefer the dead end 4
    reached, length, trail = roll(BRANCHY, scores, 1, 8, 3)
    assert trail == [1, 4, 1, 0, 3, 6, 7, 8]  # 4 exhausted: back to the only (visited) neighbour
    assert (reached, length) == (True, 8)  # BFS [1, 0, 3, 6, 7, 8] has 6 cells: beyond 1.05 × 6


def test_rollout_that_loops_fails_after_n_squared_moves():
    scores = toward(BRANCHY, 8)
    scores[1, 2], scores[2, 5] = 5.0, 5.0  # at 2, fall back to 5 rather than 1: 2 ↔ 5 forever
    reached, length, trail = roll(BRANCHY, scores, 4, 8, 3)
    assert not reached and length == 10 and trail[:6] == [4, 1, 2, 5, 2, 5]  # 9 moves, 10 cells


def test_rollout_detour_within_five_percent_is_optimal_but_not_exact():
    from studies.poh.metrics import maze_metrics

    n = 7
    snake = [r * n + (c if r % 2 == 0 else n - 1 - c) for r in range(n) for c in range(n)]
    walls = walls_from_path(n, snake)
    start, goal = snake[1], snake[-1]  # snake[0] is a dead end next to the start
    scores = toward(walls, goal)
    scores[start, snake[0]] = 5.0
    reached, length, trail = roll(walls, scores, start, goal, n)
    assert trail[:4] == [snake[1], snake[0], snake[1], snake[2]]
    assert (reached, length) == (True, 50)  # BFS 48 cells; 50 ≤ 1.05 · 48 = 50.4
    m = maze_metrics([reached], [length], [48])
    assert (m["acc"], m["opt"], m["exact_opt"]) == (1.0, 1.0, 0.0)


def test_horizon_targets_and_distance_masks():
    path, plen = torch.tensor([[0, 3, 6, 7, 8, -1]]), torch.tensor([5])
    pos, target = horizon_targets(path, plen, 3)
    assert pos.tolist() == [[0, 3, 6, 7, 8]]  # Lmax − 1 source positions; the goal predicts nothing
    assert target[0].tolist() == [[3, 6, 7], [6, 7, 8], [7, 8, -1], [8, -1, -1], [-1, -1, -1]]
    w = torch.tensor([BRANCHY], dtype=torch.uint8)
    allowed = allowed_cells(w, 3, torch.tensor([[0]]), 3)[0, 0]
    assert [set(a.nonzero().flatten().tolist()) for a in allowed] == [{1, 3}, {2, 4, 6}, {5, 7}]
    loose = allowed_cells(w, 3, torch.tensor([[0]]), 3, mode="none")[0, 0]
    assert loose[0].sum() == 2 and loose[1:].all()


def test_validity_mask_comes_before_smoothing():
    w = torch.tensor([BRANCHY], dtype=torch.uint8)
    pos, target = horizon_targets(torch.tensor([[0, 3, 6, 7, 8]]), torch.tensor([5]), 1)
    allowed = allowed_cells(w, 3, pos, 1)[..., 0, :]  # [1, 4, 9]
    logits = (torch.randn(1, 4, 9) * 10).requires_grad_()
    loss, q = masked_smoothed_ce(logits, allowed, target[..., 0], eps=0.1)
    assert torch.isfinite(loss).all() and loss.max() < 50  # O(logit scale), never ~1e8
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~allowed] == 0).all()
    assert (q[~allowed] == 0).all() and torch.allclose(q.sum(-1), torch.ones(1, 4))
    assert q[0, 0, 3] == pytest.approx(0.9 + 0.1 / 2) and q[0, 0, 1] == pytest.approx(0.05)  # cell 0: {1, 3}
    assert q[0, 1, 6] == pytest.approx(0.95) and q[0, 1, 0] == pytest.approx(0.05)  # cell 3: {0, 6}
    # the source's order (fill −1e9, then smooth over all cells) gives losses of ~1e8
    filled = logits.detach().masked_fill(~allowed, -1e9)
    assert F.cross_entropy(filled[0], target[0, :, 0], label_smoothing=0.1) > 1e7


CFG = {"n": 3, "d_model": 16, "n_heads": 4, "d_ff": 32, "depth": 2, "R": 2, "T": 2}


def _batch(walls, path):
    return {"walls": torch.tensor([walls]).long(), "start": torch.tensor([path[0]]), "goal": torch.tensor([path[-1]]),
            "path": torch.tensor([path]), "path_len": torch.tensor([len(path)]), "n": 3}  # fmt: skip


def test_entropy_regulariser_has_a_gradient_and_anneals_to_zero():
    torch.manual_seed(0)
    model = build_maze_model(MazeConfig(**CFG), "poh")
    batch = _batch(BRANCHY, [0, 3, 6, 7, 8])
    on, off = MazeTaskConfig(entropy_weight=0.5), MazeTaskConfig(entropy_weight=0.0)
    loss, logs = maze_loss(model, batch, 0, 11, on)
    assert logs["entropy_weight"] == 0.5 and torch.isfinite(loss) and loss.item() < 10
    (loss - maze_loss(model, batch, 0, 11, off)[0]).backward()  # the regulariser alone
    assert model.stack.controller.w_r.weight.grad.abs().sum() > 0
    assert maze_loss(model, batch, 5, 11, on)[1]["entropy_weight"] == pytest.approx(0.25)
    assert maze_loss(model, batch, 10, 11, on)[1]["entropy_weight"] == 0.0
    base = build_maze_model(MazeConfig(**CFG), "baseline")
    assert "entropy_weight" not in maze_loss(base, batch, 0, 11, on)[1]  # no routing, no term


def test_maze_splits_are_disjoint_by_maze():
    data = mazes.generate_dataset(120, 4, seed=0, min_path_frac=0.3)
    twice = {k: np.concatenate([v, v[:20]]) if isinstance(v, np.ndarray) else v for k, v in data.items()}
    train, val, test = split_mazes(twice, n_val=20, n_test=30, seed=0)
    keys = [set(maze_keys(s)) for s in (train, val, test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert len(keys[1]) == 20 and len(keys[2]) == 30 and len(train["start"]) == len(keys[0])
    cfg = {"model": {"kind": "baseline", **CFG}, "train": {"steps": 1, "batch_size": 2, "lr": 1e-3}}
    with pytest.raises(ValueError, match="both the train and val"):
        run_maze_cell(cfg, train, train, progress=False)


def test_baseline_learns_5x5_mazes_beyond_random_rollouts():
    """A short CPU run: the roll-out beats random score tables (the roll-out rules alone reach
    ~0.44 of these goals and ~0.21 optimally) and the junction choices beat a uniform pick."""
    data = mazes.generate_dataset(3300, 5, seed=0)
    train, val, _ = split_mazes(data, n_val=200, n_test=100, seed=0)
    d = as_tensors(val)
    g = torch.Generator().manual_seed(0)
    rand = greedy_rollout(torch.rand(len(d["start"]), 25, 25, generator=g), d["walls"], d["start"], d["goal"], 5)
    chance = maze_metrics(rand[0], rand[1], d["path_len"])
    cfg = {
        "model": {"kind": "baseline", "d_model": 32, "n_heads": 4, "d_ff": 64, "depth": 3},
        "train": {"steps": 400, "batch_size": 32, "lr": 3e-3, "seed": 0},
    }
    model, history, metrics = run_maze_cell(cfg, train, val, progress=False)
    final = evaluate_maze(model, val)
    print("maze e2e", {k: round(v, 3) for k, v in final.items()}, "random", chance)
    assert final["junction_acc"] > final["junction_chance"] + 0.07, final
    assert final["opt"] > chance["opt"] + 0.08, (final, chance)
    assert history["train"][-1]["ce"] < history["train"][0]["ce"]


def test_random_rollout_floor_on_a_hand_maze():
    """BRANCHY from 0 to 8: the first choice (1 or 3) decides; 3 leads straight down the
    5-cell BFS path, 1 into the top row's dead ends and back (longer than 1.05 × 5). With random
    scores that is a coin flip: random_opt → 0.5 over 400 copies; a corridor is always solved."""
    walls = np.array([BRANCHY] * 400, np.uint8)
    data = {
        "walls": walls,
        "start": np.zeros(400, int),
        "goal": np.full(400, 8),
        "path": np.array([[0, 3, 6, 7, 8]] * 400),
        "path_len": np.full(400, 5),
        "n": 3,
    }
    floor = random_rollout_floor(data, seed=0, draws=1)
    assert floor["random_opt"] == pytest.approx(0.5, abs=0.075)
    assert floor["random_acc"] >= floor["random_opt"]
    assert random_rollout_floor(data, seed=0, draws=1) == floor  # seeded
    line = walls_from_path(3, [0, 1, 2, 5, 4, 3, 6, 7, 8])
    corridor = {
        **data,
        "walls": np.array([line] * 400, np.uint8),
        "path": np.array([[0, 1, 2, 5, 4, 3, 6, 7, 8]] * 400),
    }
    corridor["path_len"] = np.full(400, 9)
    assert random_rollout_floor(corridor, seed=1, draws=2) == {"random_acc": 1.0, "random_opt": 1.0}
