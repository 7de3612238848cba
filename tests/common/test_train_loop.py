"""The shared training loop: schedule, seeding, best-state checkpointing, config splitting."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from studies.train_loop import LoopConfig, anneal_linear, epoch_batches, lr_at, split_config, train


def test_warmup_then_cosine_values_at_known_steps():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)  # warm-up: (step + 1) / warmup
    assert lr_at(4, 100, 1.0, 10) == pytest.approx(0.5)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(99, 100, 1.0, 10) == pytest.approx(0.1)  # floor at the last step
    assert lr_at(10, 21, 2.0, 0) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half-way: 1.1
    assert lr_at(15, 21, 1.0, 0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_at(20, 21, 1.0, 0, min_ratio=0.0) == pytest.approx(0.0, abs=1e-12)


def test_anneal_reaches_zero_at_the_last_step():
    assert anneal_linear(5e-4, 0, 11) == 5e-4
    assert anneal_linear(5e-4, 5, 11) == pytest.approx(2.5e-4)
    assert anneal_linear(5e-4, 10, 11) == 0.0


def test_epoch_batches_visit_every_row_once_per_epoch():
    it = epoch_batches(10, 5, np.random.default_rng(0))
    epoch = np.concatenate([next(it), next(it)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert len(next(epoch_batches(3, 8, np.random.default_rng(0)))) == 3  # capped at n


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.drop = nn.Dropout(0.5)


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g)


def _make_batch(x):
    def make(idx, rng):  # the rng is the loop's augmentation stream
        return x[idx] + torch.from_numpy(rng.normal(size=(len(idx), 3))).float() * 0.1

    return make


def _loss(model, batch, step):
    diff = model.drop(batch - model.w)  # dropout: torch's RNG must be seeded too
    return diff.pow(2).mean(), {"extra": float(step)}


def _run(seed, **kw):
    torch.manual_seed(123)  # model init is the caller's
    model = Scalar()
    cfg = LoopConfig(steps=12, batch_size=4, lr=0.1, seed=seed, warmup_frac=0.25, **kw)
    res = train(model, 16, _make_batch(_data()), _loss, cfg, progress=False)
    return model, res


def test_same_seed_gives_identical_history_and_weights():
    (m1, r1), (m2, r2) = _run(7), _run(7)
    strip = [{k: v for k, v in rec.items() if k != "time_s"} for rec in r1.history["train"]]
    assert strip == [{k: v for k, v in rec.items() if k != "time_s"} for rec in r2.history["train"]]
    assert torch.equal(m1.w, m2.w)
    m3, _ = _run(8)
    assert not torch.equal(m1.w, m3.w)
    assert r1.history["train"][0]["lr"] == pytest.approx(0.1 / 3) and r1.history["train"][5]["extra"] == 5.0


def _fake_metric_run(sequence, **kw):
    torch.manual_seed(0)
    model, seen, calls = Scalar(), [], iter(sequence)

    def evaluate(m):
        seen.append(m.w.detach().clone())  # the state this evaluation scored
        return next(calls)

    cfg = LoopConfig(steps=len(sequence), batch_size=4, lr=0.1, eval_every=1, **kw)
    res = train(model, 16, _make_batch(_data()), _loss, cfg, evaluate=evaluate, progress=False)
    return model, res, seen


def test_best_checkpoint_is_restored():
    seq = [{"acc": a} for a in (0.1, 0.5, 0.3, 0.2)]
    model, res, seen = _fake_metric_run(seq, target="acc")
    assert res.best["step"] == 1 and res.restored and res.final == {"step": 3, "acc": 0.2}
    assert torch.equal(model.w, seen[1]) and not torch.equal(model.w, seen[3])
    assert [e["acc"] for e in res.history["eval"]] == [0.1, 0.5, 0.3, 0.2]


def test_min_mode_ties_and_no_restore():
    seq = [{"loss": v, "acc": a} for v, a in ((3.0, 0), (1.0, 0), (2.0, 0), (1.0, 0))]
    model, res, seen = _fake_metric_run(seq, target="loss", target_mode="min")
    assert res.best["step"] == 1 and torch.equal(model.w, seen[1])  # a tie does not replace
    seq = [{"grid": g, "cell": c} for g, c in ((0, 0.2), (0, 0.6), (0, 0.4), (0.1, 0.3))]
    _, res, _ = _fake_metric_run(seq, target=("grid", "cell"))
    assert res.best["step"] == 3 and not res.restored  # the last state is the best: kept live
    model, res, seen = _fake_metric_run([{"acc": a} for a in (0.9, 0.1)], target="acc", restore_best=False)
    assert res.best["step"] == 0 and not res.restored and torch.equal(model.w, seen[1])


def test_non_finite_loss_stops_training():
    cfg = LoopConfig(steps=3, batch_size=4, lr=0.1)
    with pytest.raises(FloatingPointError, match="step 0"):
        train(Scalar(), 16, _make_batch(_data()), lambda m, b, s: (m.w.sum() * math.nan, {}), cfg, progress=False)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"unknown training keys \['lrr'\]"):
        split_config({"lr": 1.0, "lrr": 2.0}, LoopConfig)
    with pytest.raises(ValueError, match=r"LoopConfig\.warmup_frac"):
        LoopConfig(steps=10, batch_size=2, lr=1.0, warmup_frac=1.5)
    assert LoopConfig(steps=10, batch_size=2, lr=1.0, target="grid_acc,cell_acc").target == ("grid_acc", "cell_acc")
    assert LoopConfig(steps=200, batch_size=2, lr=1.0, warmup_frac=0.05).warmup_steps == 10
