"""Maze models, their wall helpers, and the parameter-parity search."""

from dataclasses import replace

import pytest
import torch

from studies.poh.maze_models import (
    MazeBaseline,
    MazeConfig,
    MazePoH,
    build_maze_model,
    unpack_walls,
    valid_next_mask,
    walls_to_image,
)
from studies.poh.parity import count_params, match_width

NB, EB, SB, WB = 1, 2, 4, 8  # open-side bits, as studies.data.mazes packs them
CFG = MazeConfig(n=3, d_model=16, n_heads=4, d_ff=32, depth=2, horizons=3, R=3, T=2)


def snake_maze() -> torch.Tensor:
    """3×3 maze whose only path snakes 0→1→2→5→4→3→6→7→8; packed bits [1, 9]."""
    w = [EB, WB | EB, WB | SB, EB | SB, WB | EB, NB | WB, EB | NB, WB | EB, WB]
    return torch.tensor([w], dtype=torch.uint8)


def test_valid_next_mask_follows_open_walls_only():
    mask = valid_next_mask(snake_maze(), 3)[0]
    expected = {0: {1}, 1: {0, 2}, 2: {1, 5}, 3: {4, 6}, 4: {3, 5}, 5: {2, 4}, 6: {3, 7}, 7: {6, 8}, 8: {7}}
    assert {i: set(mask[i].nonzero().flatten().tolist()) for i in range(9)} == expected


def test_walls_image_marks_cells_and_open_passages():
    img = walls_to_image(snake_maze(), 3)[0, 0]
    assert img.shape == (7, 7)
    assert img[1, 2] == 1 and img[1, 4] == 1 and img[2, 5] == 1  # 0–1, 1–2, 2–5 open
    assert img[2, 1] == 0 and img[1, 6] == 0 and img[0].sum() == 0  # 0–3 closed, border walls
    assert img.sum() == 9 + 8  # 9 cells, 8 passages of a spanning tree


def test_walls_image_agrees_with_the_data_module():
    mazes = pytest.importorskip("studies.data.mazes")
    import random

    walls = torch.from_numpy(mazes.dfs_maze(5, random.Random(0))).unsqueeze(0)
    ours = walls_to_image(walls, 5)[0, 0]
    theirs = torch.from_numpy(mazes.to_image(walls[0].numpy())).float()  # 1 = wall there
    assert torch.equal(ours, 1 - theirs)


@pytest.mark.parametrize("kind", ["baseline", "poh"])
@pytest.mark.parametrize("use_cnn", [True, False])
def test_maze_models_give_per_cell_multi_horizon_logits(kind, use_cnn):
    torch.manual_seed(0)
    model = build_maze_model(replace(CFG, use_cnn=use_cnn), kind)
    walls, start, goal = snake_maze().repeat(2, 1), torch.tensor([0, 0]), torch.tensor([8, 8])
    out = model(walls, start, goal)
    assert out.logits.shape == (2, 9, 3, 9)
    assert torch.allclose(model(unpack_walls(walls), start, goal).logits, out.logits)
    at = model(walls, start, goal, current=torch.tensor([2, 5]))
    assert at.logits.shape == (2, 3, 9)
    assert torch.allclose(at.logits[0], out.logits[0, 2], atol=1e-5)
    if kind == "poh":
        assert out.alpha.shape == (CFG.R * CFG.depth, 2, 4) and out.entropy.shape == (2,)
        assert out.entropy.requires_grad
    else:
        assert out.alpha is None and out.entropy is None


def test_masked_logits_give_a_distribution_over_valid_moves():
    model = MazePoH(CFG)
    walls = snake_maze()
    logits = model(walls, torch.tensor([0]), torch.tensor([8])).logits[0, :, 0]  # k=1: [9, 9]
    masked = logits.masked_fill(~valid_next_mask(walls, 3)[0], float("-inf"))
    probs = masked.softmax(-1).detach()
    assert torch.isfinite(logits).all()
    assert torch.allclose(probs.sum(-1), torch.ones(9))
    assert probs[0, 1] == 1.0 and probs[2, [1, 5]].sum() == pytest.approx(1.0)


def test_poh_gradient_reaches_controller_and_refine_rate():
    model = MazePoH(CFG)
    out = model(snake_maze(), torch.tensor([0]), torch.tensor([8]))
    (out.logits.sum() + out.entropy.sum()).backward()
    assert model.refine_rate.grad is not None
    assert model.stack.controller.gru_h.weight_hh.grad.abs().sum() > 0
    fixed = MazePoH(replace(CFG, refine_learnable=False))
    assert "refine_rate" not in dict(fixed.named_parameters())


def test_parity_lands_within_ten_percent_keeping_heads():
    base = replace(CFG, n=6, d_model=64, n_heads=4, d_ff=256, depth=3)
    target = count_params(lambda: MazeBaseline(base))
    d, d_ff, n = match_width(lambda dm, ff: MazePoH(replace(base, d_model=dm, d_ff=ff)), target, 4, 3, 4.0)
    assert abs(n - target) <= 0.10 * target
    assert d % 4 == 0 and d_ff == 4 * d and d < 64  # PoH's controller costs width
    assert n == count_params(lambda: MazePoH(replace(base, d_model=d, d_ff=d_ff)))


def test_parity_raises_when_no_width_fits():
    with pytest.raises(ValueError, match="more than 10% from the target"):
        match_width(lambda dm, ff: MazePoH(replace(CFG, d_model=dm, d_ff=ff)), 10, 4, 2, 2.0)


def test_maze_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"MazeConfig\.route_every='sometimes'"):
        MazeConfig(route_every="sometimes")
    with pytest.raises(ValueError, match=r"MazeConfig\.dropout=1\.5"):
        MazeConfig(dropout=1.5)
