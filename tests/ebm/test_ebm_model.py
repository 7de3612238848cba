"""The §4 model: paper parameter counts, EMA target encoder, latent construction, givens."""

from dataclasses import replace

import pytest
import torch

from studies.data.sudoku import generate
from studies.ebm.grid import solution_onehot
from studies.ebm.model import CPU_SMALL, PAPER_7M, PAPER_36M, EBMConfig, EBMSudoku, config, n_trainable

TINY = EBMConfig(
    d_model=16, n_layers=1, n_heads=2, d_ff=32, d_z=8, d_pred=16, dec_layers=1, dec_heads=2, d_cell=8, dropout=0.0
)


@pytest.fixture(scope="module")
def boards():
    data = generate(4, seed=1, max_givens=45, target_givens=45, progress=False)
    return torch.as_tensor(data["puzzles"]).long(), torch.as_tensor(data["solutions"]).long()


@pytest.mark.parametrize(("cfg", "count"), [(PAPER_7M, 7_471_945), (PAPER_36M, 36_505_481)])
def test_paper_configs_have_the_logged_trainable_parameter_counts(cfg, count):
    """The source has no cell_context (its decoder sees only pooled z_ctx), so the paper counts
    are with it off; the frozen target encoder is not trainable and does not count."""
    assert not cfg.cell_context
    assert n_trainable(EBMSudoku(cfg)) == count
    # cell_context adds exactly one d_model → d_cell projection
    extra = cfg.d_model * cfg.d_cell + cfg.d_cell
    assert n_trainable(EBMSudoku(replace(cfg, cell_context=True))) == count + extra


def test_cpu_small_is_the_389k_evidence_size_with_cell_context():
    assert CPU_SMALL.cell_context
    assert 380_000 <= n_trainable(EBMSudoku(CPU_SMALL)) <= 395_000


def test_source_target_projection_also_counts_the_same():
    """target_proj "frozen" (the source's 9-channel frozen projection) changes no trainable count."""
    assert n_trainable(EBMSudoku(replace(PAPER_7M, target_proj="frozen"))) == 7_471_945


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="target_proj"):
        EBMConfig(target_proj="shared")
    with pytest.raises(ValueError, match="d_cell=10 is not divisible by dec_heads"):
        EBMConfig(d_cell=10)
    with pytest.raises(ValueError, match="unknown EBM config 'huge'"):
        config("huge")


def test_target_encoder_has_no_grad_and_starts_as_a_copy():
    torch.manual_seed(0)
    m = EBMSudoku(TINY)
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    for t, c in zip(m.target_encoder.parameters(), m.context_encoder.parameters(), strict=True):
        assert torch.equal(t, c)


def test_ema_moves_target_by_the_linear_momentum_schedule():
    torch.manual_seed(0)
    m = EBMSudoku(TINY)
    assert m.momentum(0, 101) == pytest.approx(0.996)
    assert m.momentum(50, 101) == pytest.approx(0.998)
    assert m.momentum(100, 101) == 1.0
    before = [t.clone() for t in m.target_encoder.parameters()]
    with torch.no_grad():
        for p in m.context_encoder.parameters():
            p.add_(1.0)
    assert m.ema_update(50, 101) == pytest.approx(0.998)
    for b, t in zip(before, m.target_encoder.parameters(), strict=True):  # context = b + 1 → target = b + 0.002
        torch.testing.assert_close(t, b + 0.002, rtol=0, atol=1e-6)
    m.ema_update(100, 101)  # momentum 1: the target no longer moves
    for b, t in zip(before, m.target_encoder.parameters(), strict=True):
        torch.testing.assert_close(t, b + 0.002, rtol=0, atol=1e-6)


def test_source_target_projection_is_never_averaged_but_its_bias_is():
    torch.manual_seed(0)
    m = EBMSudoku(replace(TINY, target_proj="frozen"))
    w = m.target_encoder.input_proj.weight.clone()
    b = m.target_encoder.input_proj.bias.clone()
    m.ema_update(0, 10)
    assert torch.equal(m.target_encoder.input_proj.weight, w)
    assert not torch.equal(m.target_encoder.input_proj.bias, b)


def test_training_pass_shapes_latent_norm_and_hard_set_givens(boards):
    puzzles, solutions = boards
    torch.manual_seed(0)
    m = EBMSudoku(replace(TINY, z_noise=0.0))
    out = m(puzzles, solution_onehot(solutions))
    assert out["logits"].shape == (4, 81, 9) and out["z_pred"].shape == out["z_tgt"].shape == (4, 16)
    torch.testing.assert_close(out["z"].norm(dim=-1), torch.ones(4))  # unit norm, no noise
    pred = out["logits"].argmax(-1) + 1
    given = puzzles > 0
    assert torch.equal(pred[given], puzzles[given])
    probs = out["logits"].softmax(-1)
    assert torch.equal(probs[given].max(-1).values, torch.ones(int(given.sum())))


def test_z_norm_off_keeps_the_encoder_scale():
    torch.manual_seed(0)
    m = EBMSudoku(replace(TINY, z_norm=False, z_noise=1.0))
    z_tgt = torch.randn(3, 16)
    noise = torch.randn(3, 8)
    torch.testing.assert_close(m.latent(z_tgt, noise), m.z_encoder(z_tgt) + noise)


def test_cell_context_makes_cells_depend_on_their_own_token():
    """With cell_context the decoder input of a cell changes when only that cell's context
    token changes; without it the decoder sees only pooled z_ctx."""
    torch.manual_seed(0)
    for on in (True, False):
        m = EBMSudoku(replace(TINY, cell_context=on))
        tokens, z_ctx, z = torch.randn(1, 81, 16), torch.randn(1, 16), torch.randn(1, 8)
        bumped = tokens.clone()
        bumped[0, 5] += 1.0
        with torch.no_grad():
            diff = (m.decoder.features(bumped, z_ctx, z) - m.decoder.features(tokens, z_ctx, z)).abs().sum(-1)[0]
        assert (diff[5] > 0) == on
        assert float(diff.sum() - diff[5]) == 0.0


def test_pos_std_sets_the_position_tables_scale_and_one_is_the_sources_default():
    """pos_std 1.0 draws exactly what nn.Embedding draws (the source); 0.02 shrinks every
    row/column/box table of the encoders and the decoder; 0 is refused by name."""
    big = replace(TINY, d_model=64, d_cell=64)
    torch.manual_seed(0)
    source = EBMSudoku(big)
    torch.manual_seed(0)
    default = EBMSudoku(replace(big, pos_std=1.0))
    assert torch.equal(source.context_encoder.pos.row.weight, default.context_encoder.pos.row.weight)
    small = EBMSudoku(replace(big, pos_std=0.02))
    for pos in (small.context_encoder.pos, small.decoder.pos):
        for table in (pos.row, pos.col, pos.box):
            assert 0.01 < table.weight.std().item() < 0.03
    assert 0.8 < source.decoder.pos.box.weight.std().item() < 1.2
    with pytest.raises(ValueError, match=r"EBMConfig.pos_std=0 must be > 0"):
        EBMConfig(pos_std=0)
