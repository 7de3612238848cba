"""One training cell on the shared loop: a few steps of a tiny model (CPU smoke)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from ebm_tiny import TINY

from studies.data.sudoku import generate, is_valid_solution, split
from studies.ebm.model import PAPER_7M, EBMSudoku
from studies.ebm.train import EvalConfig, evaluate_split, make_batch_fn, train_cell
from studies.train_loop import LoopConfig


@pytest.fixture(scope="module")
def splits():
    data = generate(40, seed=11, max_givens=45, target_givens=45, progress=False)
    return split(data, n_val=8, seed=0)


def test_batches_are_augmented_consistently(splits):
    train, _ = splits
    p, s = make_batch_fn(train)(np.arange(6), np.random.default_rng(0))
    assert is_valid_solution(s.numpy()).all()
    given = p > 0
    assert torch.equal(p[given], s[given])
    assert not torch.equal(s, torch.as_tensor(train["solutions"][:6].astype(np.int64)))  # really moved


def test_a_few_steps_train_select_on_val_and_move_the_ema(splits):
    train, val = splits
    loop = LoopConfig(steps=6, batch_size=8, lr=1e-3, eval_every=3, target=("val_puzzle_acc", "val_blank_acc"))
    torch.manual_seed(loop.seed)
    start = [p.clone() for p in EBMSudoku(TINY).target_encoder.parameters()]
    ecfg = EvalConfig(mode="langevin", chains=2, steps=2)
    model, result = train_cell(train, val, TINY, loop, ecfg=ecfg)
    losses = [r["loss"] for r in result.history["train"]]
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert [e["step"] for e in result.history["eval"]] == [2, 5]
    assert result.history["train"][3]["ema_momentum"] == pytest.approx(0.996 + 0.004 * 2 / 5)
    moved = sum(float((a - b).abs().sum()) for a, b in zip(start, model.target_encoder.parameters(), strict=True))
    assert moved > 0
    assert result.best["step"] in (2, 5) and 0 <= result.best["val_blank_acc"] <= 1


def test_selection_never_uses_the_oracle():
    with pytest.raises(ValueError, match="oracle_z decodes a latent built from the solution"):
        EvalConfig(mode="oracle_z")


def test_evaluation_reports_each_mode_with_floors(splits):
    _, val = splits
    torch.manual_seed(0)
    model = EBMSudoku(TINY).eval()
    for mode in ("z_zero", "langevin", "oracle_z"):
        m = evaluate_split(model, val, mode, EvalConfig(chains=2, steps=1, batch_size=3))
        assert m["n"] == 8 and m["chance"] == pytest.approx(1 / 9)
        assert 0 <= m["blank_acc"] <= 1 and m["candidate_floor"] > 1 / 9


def test_paper_config_takes_one_cpu_step():
    """The 7.4M paper model: one training step on a batch of 2, so the config cannot rot."""
    data = generate(4, seed=2, max_givens=45, target_givens=45, progress=False)
    loop = LoopConfig(steps=1, batch_size=2, lr=1e-4)
    _, result = train_cell(data, data, replace(PAPER_7M), loop, ecfg=EvalConfig(batch_size=4))
    assert np.isfinite(result.history["train"][0]["loss"])
