"""Loss terms on hand-built tensors: VICReg, the constraint penalty, blank-only CE."""

import math

import numpy as np
import pytest
import torch

from studies.data.sudoku import UNITS, generate
from studies.ebm.grid import solution_onehot
from studies.ebm.loss import VAR_EPS, LossWeights, blank_cross_entropy, constraint_penalty, ebm_loss, vicreg_terms


@pytest.fixture(scope="module")
def pair():
    data = generate(1, seed=3, max_givens=45, target_givens=45, progress=False)
    return torch.as_tensor(data["puzzles"]).long(), torch.as_tensor(data["solutions"]).long()


def test_vicreg_variance_and_covariance_on_a_known_batch():
    """z = [[0,0],[2,2]]: each column has var 2 (1/(B−1)), std sqrt(2+eps) > 1 → variance 0;
    covariance off-diagonal = 2 twice → (4 + 4) / D=2 = 4."""
    var, cov = vicreg_terms(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    assert var.item() == 0.0
    assert cov.item() == pytest.approx(4.0)


def test_vicreg_variance_hinge_on_a_narrow_batch():
    """z = [[0,0],[0.5,-0.5]]: var 0.125 per column → std sqrt(0.125+eps), hinge 1 − std;
    off-diagonal cov = −0.125 twice → 2·0.015625 / 2 = 0.015625."""
    var, cov = vicreg_terms(torch.tensor([[0.0, 0.0], [0.5, -0.5]]))
    assert var.item() == pytest.approx(1 - math.sqrt(0.125 + VAR_EPS), rel=1e-6)
    assert cov.item() == pytest.approx(0.015625, rel=1e-6)


def test_vicreg_collapsed_batch_is_penalised_with_a_finite_gradient():
    z = torch.ones(4, 3, requires_grad=True)
    var, cov = vicreg_terms(z)
    assert var.item() == pytest.approx(1 - math.sqrt(VAR_EPS))
    assert cov.item() == 0.0
    var.backward()
    assert torch.isfinite(z.grad).all()


def test_constraint_penalty_is_zero_on_a_valid_grid_and_positive_on_a_broken_one(pair):
    _, solution = pair
    assert constraint_penalty(solution_onehot(solution)).item() == 0.0
    broken = solution.clone()
    broken[0, 0] = broken[0, 1]  # a repeated digit in row 0 (and its box)
    # row 0 and box 0: one digit twice (+1 each), one missing (+1 each); column 0 the same → 6
    assert constraint_penalty(solution_onehot(broken)).item() == 6.0
    uniform = torch.full((1, 81, 9), 1 / 9)  # every digit has mass 1 in every group
    assert constraint_penalty(uniform).item() == pytest.approx(0.0, abs=1e-10)


def test_constraint_penalty_matches_a_loop_over_groups():
    probs = torch.rand(2, 81, 9).softmax(-1)
    ref = [sum(((probs[b, list(u)].sum(0) - 1) ** 2).sum().item() for u in UNITS) for b in range(2)]
    np.testing.assert_allclose(constraint_penalty(probs).numpy(), ref, rtol=1e-5)


def test_cross_entropy_ignores_given_cells(pair):
    puzzle, solution = pair
    torch.manual_seed(0)
    logits = torch.randn(1, 81, 9)
    base = blank_cross_entropy(logits, solution, puzzle).item()
    scrambled = logits.clone()
    given = puzzle > 0
    scrambled[given] = torch.randn(int(given.sum()), 9) * 100  # wild logits on givens only
    assert blank_cross_entropy(scrambled, solution, puzzle).item() == base
    blanks = ~given
    expected = torch.nn.functional.cross_entropy(logits[blanks], solution[blanks] - 1).item()
    assert base == pytest.approx(expected)


def test_total_loss_weights_each_term():
    out = {
        "z_pred": torch.tensor([[1.0, 0.0]]).repeat(2, 1),
        "z_tgt": torch.zeros(2, 2),  # energy = 1
        "z_ctx": torch.tensor([[0.0, 0.0], [2.0, 2.0]]),  # var 0, cov 4
        "logits": torch.zeros(2, 81, 9),  # uniform: penalty 0, CE log 9
    }
    sol = torch.ones(2, 81, dtype=torch.long)
    puz = torch.zeros(2, 81, dtype=torch.long)
    total, logs = ebm_loss(out, sol, puz, LossWeights(cov_weight=0.5, decode_weight=2.0))
    assert logs["energy"] == 1.0 and logs["cov"] == pytest.approx(4.0) and logs["penalty"] == pytest.approx(0, abs=1e-9)
    assert total.item() == pytest.approx(1 + 0.5 * 4 + 2 * math.log(9), rel=1e-6)
    with pytest.raises(ValueError, match="constraint_weight=-1"):
        LossWeights(constraint_weight=-1)
