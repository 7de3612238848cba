"""Short training runs of both LMs, determinism, evaluation, and which split each stage reads."""

import json
import math

import pytest
import torch
import yaml

from pipeline.codehash import ROOT
from pipeline.spec import Context, Params, Upstream
from stages.common.trained import load_trained
from stages.ska import lm_evaluate, lm_report, lm_train
from studies.data.tokenizer import save_tokenizer, save_tokens, train_tokenizer
from studies.ska.banks import add_signatures, build_bank
from studies.ska.model import CausalLM, LMConfig
from studies.ska.train import LMData, evaluate_lm, train_lm
from studies.train_loop import LoopConfig

V, L = 12, 16


def _data(attention, n=24, seed=0):
    """A repetitive synthetic stream (period 6 plus noise-free phase shifts)."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.tensor([1, 5, 2, 7, 3, 9])
    phase = torch.randint(0, 6, (n,), generator=g)
    stream = pattern[(phase[:, None] + torch.arange(L + 1)) % 6]  # [n, L+1]
    x, y = stream[:, :-1].contiguous(), stream[:, 1:].contiguous()
    bank = None
    if attention == "ska":  # built from the inputs only, never from the L+1 chunk
        bank = add_signatures(build_bank(x, 4, 2), k=16, seed=0, vocab_size=V)
    return LMData(x, y, bank)


def _model(attention):
    torch.manual_seed(0)
    cfg = LMConfig(
        vocab_size=V,
        seq_len=L,
        d_model=32,
        n_layers=2,
        n_heads=2,
        window=4,
        stride=2,
        minhash_k=16,
        attention=attention,
        router_topk=2,
        adapter_rank=4,
    )
    return CausalLM(cfg)


@pytest.mark.parametrize("attention", ["ska", "sdpa"])
def test_thirty_steps_reduce_loss(attention):
    data, model = _data(attention), _model(attention)
    before = evaluate_lm(model, data, batch_size=8)
    cfg = LoopConfig(steps=30, batch_size=8, lr=3e-3, warmup_frac=5 / 30, weight_decay=0.01, grad_clip=1.0)
    hist = train_lm(model, data, cfg, progress=False).history["train"]
    after = evaluate_lm(model, data, batch_size=8)
    assert len(hist) == 30 and all(math.isfinite(h["loss"]) for h in hist)
    assert hist[0]["lr"] == pytest.approx(3e-3 / 5) and hist[-1]["lr"] == pytest.approx(3e-4)  # 5 warm-up steps
    assert after["loss"] < 0.7 * before["loss"]
    assert after["n_tokens"] == 24 * L
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert after["tokens_per_s"] > 0


def test_training_is_deterministic_given_the_seed():
    runs = []
    for _ in range(2):
        data, model = _data("ska"), _model("ska")
        cfg = LoopConfig(steps=3, batch_size=4, lr=1e-3, warmup_frac=1 / 3, weight_decay=0.0, seed=7)
        hist = train_lm(model, data, cfg, progress=False).history["train"]
        runs.append([h["loss"] for h in hist])
    assert runs[0] == runs[1]


def test_validation_picks_the_kept_state():
    """With val data, val_loss is measured every eval_every steps and the state of least val
    loss is the one left in the model (here val is the train data, so the loss falls)."""
    data, model = _data("sdpa"), _model("sdpa")
    cfg = LoopConfig(steps=20, batch_size=8, lr=3e-3, warmup_frac=0.1, eval_every=5)
    result = train_lm(model, data, cfg, val=data.spaced(8), progress=False)
    evals = result.history["eval"]
    assert [e["step"] for e in evals] == [4, 9, 14, 19]
    best = min(evals, key=lambda e: e["val_loss"])
    assert result.best["step"] == best["step"]
    assert evaluate_lm(model, data.spaced(8), 8)["loss"] == pytest.approx(best["val_loss"])


def test_spaced_picks_evenly_spread_sequences_with_their_bank():
    data = _data("ska", n=10)
    sub = data.spaced(4)
    assert torch.equal(sub.inputs, data.inputs[[0, 3, 6, 9]])
    assert torch.equal(sub.targets, data.targets[[0, 3, 6, 9]])
    assert sub.bank.n_seqs == 4 and torch.equal(sub.bank.sizes, data.bank.select(torch.tensor([0, 3, 6, 9])).sizes)
    assert data.spaced(0) is data and data.spaced(10) is data


def test_data_rejects_a_bank_of_the_wrong_size():
    data = _data("ska")
    with pytest.raises(ValueError, match="sequences"):
        LMData(data.inputs[:5], data.targets[:5], data.bank)


@pytest.mark.parametrize("attention", ["ska", "sdpa"])
def test_model_learns_what_only_the_current_token_predicts(attention):
    """Uniform unigrams, deterministic bigrams: loss must fall far below log V (the unigram
    plateau), which only a model that still sees the token at its own position can do."""
    vocab, length, n = 64, 32, 64
    g = torch.Generator().manual_seed(1)
    successor = torch.randperm(vocab, generator=g)  # next = successor[current]
    stream = torch.empty(n, length + 1, dtype=torch.long)
    stream[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(length):
        stream[:, t + 1] = successor[stream[:, t]]
    x, y = stream[:, :-1].contiguous(), stream[:, 1:].contiguous()
    bank = add_signatures(build_bank(x, 8, 4), k=16, seed=0, vocab_size=vocab) if attention == "ska" else None
    torch.manual_seed(0)
    model = CausalLM(
        LMConfig(
            vocab_size=vocab,
            seq_len=length,
            d_model=32,
            n_layers=2,
            n_heads=2,
            window=8,
            stride=4,
            minhash_k=16,
            attention=attention,
        )
    )
    cfg = LoopConfig(steps=80, batch_size=16, lr=3e-3, warmup_frac=0.1, weight_decay=0.0)
    history = train_lm(model, LMData(x, y, bank), cfg, progress=False).history["train"]
    assert history[-1]["loss"] < 0.5 * math.log(vocab), history[-1]["loss"]


def test_causal_conv_branch_starts_as_the_identity():
    """With PyTorch's default init the conv summed `window` layer-normed past tokens into a
    signal ~50x the token's own embedding; on pydoc text every SKA cell then stalled at the
    unigram loss (perplexity 388 vs 191 for SDPA). Zero init keeps the token visible."""
    torch.manual_seed(0)
    model = CausalLM(LMConfig(vocab_size=V, seq_len=L, d_model=32, n_layers=2, n_heads=2, window=8, stride=4))
    x = torch.randn(3, L, 32)
    for block in model.blocks:
        assert torch.equal(block.mix(x), torch.zeros_like(x))


def _split_stream(kind: str, n: int) -> torch.Tensor:
    """A token stream per split, told apart by content: train and val repeat one cycle over the
    ids 1..8, test is seeded random ids (high loss for a model that learned the cycle)."""
    if kind == "test":
        return torch.randint(1, 9, (n,), generator=torch.Generator().manual_seed(0)).short()
    return (torch.arange(n) % 8 + 1).short()


def _tokenize_dir(path, splits):
    path.mkdir()
    save_tokenizer(train_tokenizer("whitespace", ["a b c d e f g h i j"], 12), path / "tokenizer.json")
    for split in splits:
        save_tokens(path / f"{split}.tokens.pt", _split_stream(split, 33 * 40))


def _ctx(spec, params, out, upstream):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]["ska_lm"]["params"]
    values = {k: params.get(k, base.get(k)) for k in spec.reads}
    out.mkdir()
    return Context(Params(values, spec.name), out, upstream, "ska_lm")


def test_train_selects_on_val_and_evaluate_reports_test(tmp_path):
    """The train stage never opens test (its tokenize dir has none) and its val_loss is the
    kept state's loss on val; the evaluate stage opens only test (its dir has no train or val)
    and its test_* metrics, the report's headline, are that model's numbers on test."""
    _tokenize_dir(tmp_path / "tok_train", ("train", "val"))
    _tokenize_dir(tmp_path / "tok_eval", ("test",))
    tiny = {"attention": "sdpa", "seq_len": 32, "d_model": 16, "n_layers": 1, "n_heads": 2, "steps": 30}
    tiny |= {"batch_size": 8, "lr": 1e-2, "warmup_steps": 3, "eval_every": 10, "val_seqs": 16, "eval_batch_size": 16}
    up = (Upstream("tokenize", "t", tmp_path / "tok_train", ()),)
    train_ctx = _ctx(lm_train.SPEC, tiny, tmp_path / "train", up)
    trained = lm_train.run(train_ctx)
    model, config = load_trained(train_ctx.out, lambda c: lm_train.build_model(train_ctx, c)[0])
    val = lm_train.lm_data(train_ctx, "val", 32, with_bank=False)
    assert trained["val_sequences"] == 16
    assert trained["val_loss"] == pytest.approx(evaluate_lm(model, val.spaced(16), 16)["loss"], rel=1e-5)
    evals = json.loads((train_ctx.out / "val_history.json").read_text())
    assert [e["step"] for e in evals] == [9, 19, 29]
    assert trained["val_loss"] == min(e["val_loss"] for e in evals)

    up = (Upstream("tokenize", "t", tmp_path / "tok_eval", ()), Upstream("train", "m", train_ctx.out, ()))
    eval_ctx = _ctx(lm_evaluate.SPEC, tiny, tmp_path / "evaluate", up)
    metrics = lm_evaluate.run(eval_ctx)
    test = evaluate_lm(model, lm_train.lm_data(eval_ctx, "test", 32, with_bank=False), 16)
    assert metrics["test_loss"] == pytest.approx(test["loss"]) and metrics["test_perplexity"] == test["perplexity"]
    assert metrics["test_loss"] > 2 * trained["val_loss"]  # the random test stream is the one scored
    report_metric = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]["ska_lm"]["params"]["report_metric"]
    assert report_metric == "test_perplexity" and lm_report.METRICS[0] == report_metric
