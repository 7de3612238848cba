"""benchmarks/gpu_check.py as a user runs it: a real subprocess at --quick sizes on the CPU.

The quick run goes through every part the GPU run has (the ska_bench stage for the attention
and keops rows; the paper config's first cell of every train study, upstream nodes built by
their stages), so a renamed key or a stage that no longer runs shows here as a FAILED row.
The budget and timeout tests prove the unattended behaviour: a part that cannot finish costs
its rows, never the table. The helpers that shape a train row are checked on fixed values.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import subprocess
import sys

import pytest
import torch

from pipeline.codehash import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
TRAIN_STUDIES = (  # every study of configs/paper.yaml with a train stage
    "ska_lm",
    "ska_setrecall",
    "ska_vit",
    "ska_diffusion",
    "ska_text_diffusion",
    "poh_injection",
    "poh_scaling",
    "ebm_sudoku",
    "ebm_interp",
    "bridge",
)
QUICK_ROWS = {
    *(("attention", f"L={L} {b} bf16") for L in (64, 128) for b in ("triton", "python", "sdpa")),
    ("keops", "L=64 keops fp32"),
    ("keops", "L=64 python fp32"),
    *((f"train:{s}", s) for s in TRAIN_STUDIES),
}


def gpu_check(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def table_rows(text: str) -> list[dict]:
    """The markdown table's body rows as dicts (the header row gives the keys; the separator
    row starts with '|---' and is left out)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[1:]]


@functools.cache
def load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "table.md"
    proc = gpu_check("--device", "cpu", "--quick", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_quick_cpu_run_has_a_row_per_part_and_none_failed(quick):
    proc, _ = quick
    rows = table_rows(proc.stdout)
    assert sorted((r["part"], r["row"]) for r in rows) == sorted(QUICK_ROWS)
    failed = [r for r in rows if r["result"].startswith("FAILED")]
    assert not failed, f"{failed}\n{proc.stderr[-3000:]}"
    skipped = [r for r in rows if r["result"].startswith("SKIPPED")]
    assert {r["row"] for r in skipped} == {"L=64 triton bf16", "L=128 triton bf16"}  # the CPU cannot time triton
    assert all("needs CUDA" in r["result"] for r in skipped)
    for r in rows:
        if r["result"].startswith("ok"):
            ms, rate, peak = float(r["ms/step"]), float(r["steps/s"]), float(r["peak MB"])
            assert ms > 0 and rate > 0 and math.isfinite(ms * rate) and peak >= 0, r


def test_quick_train_rows_name_the_offline_data_they_used(quick):
    rows = {r["row"]: r["result"] for r in table_rows(quick[0].stdout) if r["part"].startswith("train:")}
    assert "corpus pydoc, not the paper's wikitext103" in rows["ska_lm"]
    assert "image_source procedural, not the paper's cifar10" in rows["ska_vit"]
    assert "sudoku_source generated, not the paper's csv" in rows["poh_injection"]
    assert "lm_source tiny, not the paper's hub (no hub-model loader here)" in rows["bridge"]
    assert "not the paper's" not in rows["poh_scaling"]  # mazes are generated in the paper config too


def test_quick_table_file_holds_the_printed_table(quick):
    proc, out = quick
    printed = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    written = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert written == printed and len(written) == len(QUICK_ROWS) + 1  # and the header


def test_no_budget_skips_every_part(tmp_path):
    proc = gpu_check("--device", "cpu", "--quick", "--budget-s", "0", "--out", str(tmp_path / "t.md"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert len(rows) == len(QUICK_ROWS) and {r["result"] for r in rows} == {"SKIPPED (budget)"}


def test_a_part_past_its_timeout_fails_its_rows_and_the_run_goes_on(tmp_path):
    args = ("--device", "cpu", "--quick", "--parts", "attention", "keops", "--part-timeout-s", "0.5")
    proc = gpu_check(*args, "--out", str(tmp_path / "t.md"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert {r["part"] for r in rows} == {"attention", "keops"} and len(rows) == 8  # both parts ran
    assert {r["result"] for r in rows} == {"FAILED: timed out after 0.5 s"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_clear_error_with_exit_2(tmp_path):
    proc = gpu_check("--device", "cuda", "--out", str(tmp_path / "t.md"), timeout=60)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and not (tmp_path / "t.md").exists()


def test_unknown_part_is_an_error_naming_the_parts(tmp_path):
    proc = gpu_check("--device", "cpu", "--parts", "atention", "--out", str(tmp_path / "t.md"), timeout=60)
    assert proc.returncode == 2 and "unknown part(s) atention" in proc.stderr and "train:ska_lm" in proc.stderr


def test_steady_rate_leaves_the_first_steps_out():
    g = load_module()
    history = [{"time_s": 10.0 + 0.1 * i} for i in range(20)]  # step 0 took 10 s, every later one 0.1 s
    assert g.steady_steps_per_s(history) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="at least 2"):
        g.steady_steps_per_s(history[:1])


def test_data_cut_keeps_full_batches_and_small_eval_sets():
    g = load_module()
    sudoku = {"batch_size": 768, "n_puzzles": 9000, "n_val": 900, "n_test": 0}
    g.cut_data(sudoku)
    assert sudoku == {"batch_size": 768, "n_puzzles": 2 * 768 + 64, "n_val": 32, "n_test": 32}
    images = {"batch_size": 128, "n_train": 45000, "val_seqs": 512}
    g.cut_data(images)
    assert images == {"batch_size": 128, "n_train": 512, "val_seqs": 32}
    small = {"batch_size": 32, "n_train": 16}
    g.cut_data(small)
    assert small["n_train"] == 32  # never fewer train examples than a batch: the loop would shrink the batch


def test_offline_data_swaps_hub_and_missing_sources_for_the_defaults():
    g = load_module()
    text = {"corpus": "wikitext103", "corpus_dir": "x", "vocab_size": 8192}
    notes = g.offline_data(text, {"corpus": "pydoc", "corpus_dir": "", "vocab_size": 1024})
    assert text == {"corpus": "pydoc", "corpus_dir": "", "vocab_size": 8192}  # only the source keys change
    assert notes == ["corpus pydoc, not the paper's wikitext103 (the check fetches no hub data)"]
    keys = ("sudoku_source", "sudoku_csv", "sudoku_test_csv", "max_givens", "target_givens")
    csv = dict(zip(keys, ("csv", "no/such/train.csv", "no/such/test.csv", 25, 0), strict=True))
    default = dict(zip(keys, ("generated", "", "", 45, 0), strict=True))
    assert g.offline_data(csv, default) and csv == default
    local = {"corpus": "pydoc", "image_source": "procedural"}
    assert g.offline_data(local, {}) == [] and local == {"corpus": "pydoc", "image_source": "procedural"}
