"""The memory-safe preset refuses what cannot fit, before anything is allocated."""

import pytest

from ablate import main
from pipeline.codehash import ROOT
from pipeline.plan import build
from pipeline.spec import Context, Params
from stages import RECIPES
from stages.ska import lm_train
from studies.ska import memory


def test_cli_refuses_cells_over_the_budget_and_names_them(capsys):
    assert main(["memory-safe", "ska_lm", "--budget-gb", "100"]) == 0
    assert main(["memory-safe", "ska_lm", "--budget-gb", "0.01"]) == 1
    captured = capsys.readouterr()
    ska_cells = [
        c for c in build(ROOT / "params.yaml", RECIPES).studies["ska_lm"].cells if c.params["attention"] == "ska"
    ]
    assert f"{len(ska_cells)} cell(s) cannot fit" in captured.err  # every SKA cell (grid and named), none of sdpa
    assert "REFUSE" in captured.out and "minhash_k=64,window=64,stride=32,router_topk=4,adapter_rank=16" in captured.out


def test_train_guard_raises_memory_error_only_when_enabled(monkeypatch, tmp_path):
    params = {
        "batch_size": 8,
        "seq_len": 4096,
        "d_model": 256,
        "n_layers": 4,
        "window": 32,
        "stride": 16,
        "minhash_k": 64,
        "router_topk": 0,
        "backend": "python",
        "attention": "ska",
    }
    ctx = Context(params=Params(params, "train"), out=tmp_path, upstream=(), study="ska_lm")
    monkeypatch.setattr(memory, "available_bytes", lambda device="auto": (2**30, "test RAM"))
    monkeypatch.delenv("ABLATE_MEMORY_SAFE", raising=False)
    lm_train.memory_guard(ctx, vocab=8192)  # off by default: no refusal
    monkeypatch.setenv("ABLATE_MEMORY_SAFE", "1")
    with pytest.raises(MemoryError, match=r"estimated peak .* GiB exceeds test RAM 1.00 GiB"):
        lm_train.memory_guard(ctx, vocab=8192)
