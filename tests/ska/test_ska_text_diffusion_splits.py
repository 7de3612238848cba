"""Text diffusion: training keeps the state of least val ε-MSE; evaluation scores test only."""

import json

import pytest
import torch
import yaml

from pipeline.codehash import ROOT
from pipeline.spec import Context, Params, Upstream
from stages.common.trained import load_trained
from stages.ska import text_diffusion_evaluate, text_diffusion_train
from studies.data.tokenizer import save_tokenizer, save_tokens, train_tokenizer
from studies.ska.diffusion import Denoiser, DiffusionConfig, eps_mse
from studies.ska.text_diffusion import train_denoiser
from studies.train_loop import LoopConfig

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]["ska_text_diffusion"]["params"]
TINY = {"attention": "sdpa", "seq_len": 16, "d_embed": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "T": 20}
TINY |= {"window": 4, "stride": 2, "steps": 12, "batch_size": 8, "warmup_steps": 2, "eval_every": 4, "val_seqs": 6}


def _stream(split: str, n: int = 16 * 20 + 1) -> torch.Tensor:
    """Per split a distinct token stream: the splits differ in content, so do their scores."""
    seed = {"train": 0, "val": 1, "test": 2}[split]
    return torch.randint(1, 10, (n,), generator=torch.Generator().manual_seed(seed)).short()


def _tokenize_dir(path, splits):
    path.mkdir()
    save_tokenizer(train_tokenizer("whitespace", ["a b c d e f g h i j"], 12), path / "tokenizer.json")
    for split in splits:
        save_tokens(path / f"{split}.tokens.pt", _stream(split))


def _ctx(spec, out, upstream):
    out.mkdir()
    values = {k: TINY.get(k, PARAMS.get(k)) for k in spec.reads}
    return Context(Params(values, spec.name), out, upstream, "ska_text_diffusion")


def test_train_denoiser_keeps_the_state_of_least_val_eps_mse():
    torch.manual_seed(0)
    model = Denoiser(DiffusionConfig(modality="text", vocab_size=12, seq_len=16, d_embed=8, d_model=16, n_layers=1,
                                     n_heads=2, T=20, window=4, stride=2))  # fmt: skip
    ids, val = _stream("train")[:320].long().view(20, 16), _stream("val")[:96].long().view(6, 16)
    result = train_denoiser(model, ids, LoopConfig(steps=12, batch_size=8, lr=3e-3, eval_every=4), val, progress=False)
    evals = result.history["eval"]
    assert [e["step"] for e in evals] == [3, 7, 11]
    assert result.best["val_eps_mse"] == min(e["val_eps_mse"] for e in evals)
    assert eps_mse(model, val)["eps_mse"] == pytest.approx(result.best["val_eps_mse"], rel=1e-5)


def test_train_selects_on_val_and_evaluate_reports_test(tmp_path):
    """The train stage's tokenize dir has no test file and its val_eps_mse is the kept state's
    on val; the evaluate stage's has only test, and its test_eps_mse (the report's headline)
    is that model's ε-MSE on the test windows."""
    _tokenize_dir(tmp_path / "tok_train", ("train", "val"))
    _tokenize_dir(tmp_path / "tok_eval", ("test",))
    up = (Upstream("tokenize", "t", tmp_path / "tok_train", ()),)
    train_ctx = _ctx(text_diffusion_train.SPEC, tmp_path / "train", up)
    trained = text_diffusion_train.run(train_ctx)
    model, config = load_trained(train_ctx.out, text_diffusion_train.build_model)
    val = text_diffusion_train.token_sequences(train_ctx, "val", 16, 6)
    assert trained["val_sequences"] == 6
    assert trained["val_eps_mse"] == pytest.approx(eps_mse(model, val, seed=PARAMS["eval_seed"])["eps_mse"], rel=1e-5)
    evals = json.loads((train_ctx.out / "val_history.json").read_text())
    assert trained["val_eps_mse"] == min(e["val_eps_mse"] for e in evals)

    up = (Upstream("tokenize", "t", tmp_path / "tok_eval", ()), Upstream("train", "m", train_ctx.out, ()))
    metrics = text_diffusion_evaluate.run(_ctx(text_diffusion_evaluate.SPEC, tmp_path / "evaluate", up))
    test = _stream("test")[: 16 * 20].long().view(20, 16)
    assert metrics["test_sequences"] == 20
    assert metrics["test_eps_mse"] == pytest.approx(eps_mse(model, test, seed=PARAMS["eval_seed"])["eps_mse"])
    assert metrics["test_eps_mse"] != pytest.approx(eps_mse(model, val, seed=PARAMS["eval_seed"])["eps_mse"])
    assert PARAMS["report_metric"] == "test_eps_mse" and "test_token_acc" in metrics
