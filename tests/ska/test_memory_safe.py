"""The memory-safe preset refuses what cannot fit, before anything is allocated."""

import sys
from pathlib import Path

import pytest
import yaml

from ablate import main
from pipeline.spec import Context, Params
from stages.ska import lm_train
from studies.ska import memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from test_recipes_build import shrunk_params  # noqa: E402


def test_cli_refuses_cells_over_the_budget_and_names_them(capsys, tmp_path, monkeypatch):
    """On the tiny ska_lm (test_recipes_build's params, two cells): every cell is probed once
    (the second call reads the kept probes), fits 100 GB, and is refused at 10 MB, by name."""
    shrunk, _ = shrunk_params()
    study = shrunk["studies"]["ska_lm"]
    study.pop("grid", None)
    study["cells"] = {"sdpa": study["cells"]["sdpa"]}
    study["params"] |= {"report_x": "attention", "report_hue": "attention"}  # the one key that still varies
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"studies": {"ska_lm": study}}, sort_keys=False))
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ABLATE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["--params", str(params), "memory-safe", "ska_lm", "--device", "cpu", "--budget-gb", "100"]) == 0
    fits = capsys.readouterr().out
    assert fits.count("probed") == 2 and "REFUSE" not in fits
    assert main(["--params", str(params), "memory-safe", "ska_lm", "--device", "cpu", "--budget-gb", "0.01"]) == 1
    captured = capsys.readouterr()
    assert "2 cell(s) cannot fit: base, sdpa" in captured.err
    assert captured.out.count("REFUSE") == 2
    assert "preset" not in captured.out and "no window/stride/minhash_k/router_topk fits" in captured.out


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
