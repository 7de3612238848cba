"""The set-recall task (SKA's positive control): its structure, splits, floors and metrics."""

import math

import pytest
import torch

from studies.ska.synthetic import (
    SPLITS,
    SetRecallConfig,
    floors,
    generate,
    max_overlap_source,
    oracle_log_probs,
    position_masks,
    query_windows,
    recall_scores,
    split_seed,
)

CFG = SetRecallConfig(n_atoms=128, set_size=6, n_memory=6, n_queries=3, overlap=3, decoy_overlap=1)


@pytest.mark.parametrize("cfg", [CFG, SetRecallConfig()])
def test_each_copy_window_is_a_permutation_of_the_unique_max_overlap_earlier_window(cfg):
    tokens, sources = generate(cfg, 40, seed=5)
    for n in range(len(tokens)):
        win = tokens[n].view(cfg.n_windows, cfg.set_size)
        assert all(len(set(w.tolist())) == cfg.set_size for w in win)  # windows are sets
        for r, (q, c) in enumerate(query_windows(cfg)):
            best, runner_up = max_overlap_source(cfg, tokens[n], q)
            assert best == sources[n, r]  # brute force agrees with the generator's record
            assert runner_up < cfg.overlap == len(set(win[q].tolist()) & set(win[best].tolist()))
            assert sorted(win[c].tolist()) == sorted(win[best].tolist())
            assert best <= q - 3  # two whole windows between source and query: beyond two convs


def test_recall_tokens_appear_earlier_only_in_the_source_window():
    """Local context cannot predict a recall token: before its copy window, it occurs once,
    in the max-overlap window, at least two windows before the query."""
    tokens, sources = generate(CFG, 30, seed=6)
    _, recall = position_masks(CFG, tokens)
    w = CFG.set_size
    for n, t in recall.nonzero().tolist():
        target, copy_start = tokens[n, t + 1].item(), (t + 1) // w * w
        where = (tokens[n, :copy_start] == target).nonzero().flatten().tolist()
        r = query_windows(CFG).index((copy_start // w - 1, copy_start // w))
        assert len(where) == 1 and where[0] // w == sources[n, r]


def test_splits_are_deterministic_distinct_streams():
    seeds = [split_seed(0, s) for s in SPLITS]
    assert len(set(seeds)) == 3 and split_seed(1, "train") not in seeds
    a, b = generate(CFG, 200, seeds[0])[0], generate(CFG, 200, seeds[0])[0]
    assert torch.equal(a, b)
    rows = [{tuple(r) for r in generate(CFG, 200, s)[0].tolist()} for s in seeds]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_max_overlap_oracle_reaches_the_floor_and_a_unigram_model_stays_at_chance():
    """Learnable in principle: looking up the max-overlap earlier window scores 100 % at the
    oracle NLL; token frequencies alone score about chance."""
    train, _ = generate(CFG, 300, split_seed(0, "train"))
    test, _ = generate(CFG, 60, split_seed(0, "test"))
    ref = floors(CFG, test)
    oracle = recall_scores(CFG, test, oracle_log_probs(CFG, test))
    assert oracle["recall_hits"] == oracle["n_recall"] > 0
    assert oracle["recall_nll"] / oracle["n_recall"] == pytest.approx(ref["recall_nll_oracle"], abs=1e-4)
    assert ref["recall_nll_oracle"] < 1.5 < 4.5 < ref["recall_nll_chance"] == pytest.approx(math.log(128))
    counts = torch.bincount(train[:, 1:].flatten(), minlength=CFG.n_atoms).double() + 1
    unigram = (counts / counts.sum()).log().expand(len(test), CFG.length - 1, -1)
    uni = recall_scores(CFG, test, unigram)
    assert uni["recall_hits"] / uni["n_recall"] < 0.05 and ref["chance"] < 0.05
    assert uni["recall_nll"] / uni["n_recall"] > 0.95 * ref["recall_nll_chance"]


def test_recall_scores_on_fixed_predictions():
    cfg = SetRecallConfig(n_atoms=20, set_size=3, n_memory=3, n_queries=1, overlap=2, decoy_overlap=0)
    tokens, _ = generate(cfg, 2, seed=0)
    copy, recall = position_masks(cfg, tokens)
    # 1 query: copy window 4 holds tokens 12..14, i.e. target positions 11..13; one atom of 3 is new
    assert copy.sum(1).tolist() == [3, 3] and recall.sum(1).tolist() == [1, 1]
    assert copy[:, 11:14].all() and not copy[:, :11].any()
    L, V = cfg.length - 1, cfg.n_atoms
    targets = tokens[:, 1:]
    sure = torch.log_softmax(torch.zeros(2, L, V).scatter(-1, targets[..., None], 10.0), -1)
    s = recall_scores(cfg, tokens, sure)
    p = math.exp(10) / (math.exp(10) + V - 1)
    assert s["recall_hits"] == 2 and s["n_recall"] == 2 and s["n_copy"] == 6
    assert s["recall_nll"].item() == pytest.approx(-2 * math.log(p), rel=1e-5)
    # top guess: the query atom emitted right before the window (in the query, never a recall atom)
    last_query_atom = tokens[:, 8]
    wrong = torch.zeros(2, L, V).scatter(-1, last_query_atom[:, None, None].expand(2, L, 1), 10.0)
    w = recall_scores(cfg, tokens, torch.log_softmax(wrong, -1))
    assert w["recall_hits"] == 0
    uniform = recall_scores(cfg, tokens, torch.full((2, L, V), -math.log(V)))
    assert uniform["copy_nll"].item() == pytest.approx(6 * math.log(V))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(overlap=2, decoy_overlap=2), "decoy_overlap"),
        (dict(n_queries=5), "n_queries"),
        (dict(n_atoms=40), "n_atoms"),
        (dict(set_size=0), "set_size"),
    ],
)
def test_config_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        SetRecallConfig(**{**CFG.__dict__, **kw})
