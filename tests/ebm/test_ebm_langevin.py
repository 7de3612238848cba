"""Langevin inference and the decoding modes: T = 0 is plain sampling, the lowest-energy chain
is kept, one step follows the update rule, and the solver modes never read the solution."""

import pytest
import torch
from ebm_tiny import TINY

from studies.data.sudoku import generate
from studies.ebm.langevin import decode, energy, langevin, select_lowest
from studies.ebm.model import EBMSudoku


@pytest.fixture(scope="module")
def setup():
    data = generate(3, seed=5, max_givens=45, target_givens=45, progress=False)
    torch.manual_seed(0)
    model = EBMSudoku(TINY).eval()
    return model, torch.as_tensor(data["puzzles"]).long(), torch.as_tensor(data["solutions"]).long()


class Poison:
    """A stand-in for the solutions that fails on any use: proves a code path never reads it."""

    def __getattr__(self, name):
        raise AssertionError(f"the solutions were read (.{name})")

    def __getitem__(self, key):
        raise AssertionError("the solutions were read ([])")


def test_zero_steps_equals_decoding_the_sampled_latent(setup):
    model, puzzles, _ = setup
    out = langevin(model, puzzles, chains=1, steps=0, generator=torch.Generator().manual_seed(7))
    z0 = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        tokens, z_ctx = model.context(puzzles)
        expected = model.decode(tokens, z_ctx, z0, puzzles)
    torch.testing.assert_close(out.logits, expected)


def test_the_lowest_energy_chain_is_kept(setup):
    model, puzzles, _ = setup
    k = 5
    out = langevin(model, puzzles, chains=k, steps=0, generator=torch.Generator().manual_seed(1))
    z0 = torch.randn(3 * k, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens, z_ctx = (t.repeat_interleave(k, 0) for t in model.context(puzzles))
        e, logits = energy(model, tokens, z_ctx, z0, puzzles.repeat_interleave(k, 0), tau=0.0)
    e = e.view(3, k)
    assert torch.equal(out.chain, e.argmin(1))
    assert (e.std(1) > 0).all()  # chains differ, so which one is kept matters
    torch.testing.assert_close(out.energy, e.min(1).values)
    torch.testing.assert_close(out.logits, logits.view(3, k, 81, 9)[torch.arange(3), e.argmin(1)])


def test_select_lowest_on_known_energies():
    energies = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 0.7]])
    values = torch.arange(6) * 10  # row b·K + k
    best, picked = select_lowest(energies, values)
    assert best.tolist() == [1, 0]
    assert picked.tolist() == [10, 30]


def test_one_step_follows_the_update_rule(setup):
    """With noise 0 and T = 1: z1 = z0 − η ∇E(z0, τ = 1), and the decode is at z1."""
    model, puzzles, _ = setup
    out = langevin(model, puzzles, chains=1, steps=1, eta=0.5, noise=0.0, generator=torch.Generator().manual_seed(2))
    z0 = torch.randn(3, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    tokens, z_ctx = (t.detach() for t in model.context(puzzles))
    e, _ = energy(model, tokens, z_ctx, z0, puzzles, tau=1.0)
    (g,) = torch.autograd.grad(e.sum(), z0)
    assert g.abs().sum() > 0
    with torch.no_grad():
        expected = model.decode(tokens, z_ctx, z0 - 0.5 * g, puzzles)
    torch.testing.assert_close(out.logits, expected)


def test_a_seed_fixes_the_result_and_trajectory_has_one_frame_per_step(setup):
    model, puzzles, _ = setup
    a, b = (
        langevin(model, puzzles, chains=2, steps=3, generator=torch.Generator().manual_seed(4), record=True)
        for _ in range(2)
    )
    assert torch.equal(a.logits, b.logits)
    assert a.trajectory.shape == (4, 3, 81, 9)
    torch.testing.assert_close(a.trajectory[-1], a.logits.softmax(-1))


def test_solver_modes_never_read_the_solution(setup):
    model, puzzles, _ = setup
    for mode, kw in (("langevin", {"chains": 2, "steps": 2}), ("z_zero", {})):
        out = decode(model, puzzles, mode, solutions=Poison(), **kw)
        assert out.mode == mode and out.boards.shape == (3, 81)
    with pytest.raises(AssertionError, match="solutions were read"):
        decode(model, puzzles, "oracle_z", solutions=Poison())


def test_oracle_mode_needs_and_is_labelled_by_the_solution(setup):
    model, puzzles, solutions = setup
    with pytest.raises(ValueError, match="'oracle_z' needs the solutions"):
        decode(model, puzzles, "oracle_z")
    assert decode(model, puzzles, "oracle_z", solutions=solutions).mode == "oracle_z"
    with pytest.raises(ValueError, match="unknown decoding mode 'beam'"):
        decode(model, puzzles, "beam")


def test_givens_survive_every_mode(setup):
    model, puzzles, solutions = setup
    given = puzzles > 0
    for mode in ("langevin", "z_zero", "oracle_z"):
        boards = decode(model, puzzles, mode, solutions=solutions if mode == "oracle_z" else None).boards
        assert torch.equal(boards[given], puzzles[given])
