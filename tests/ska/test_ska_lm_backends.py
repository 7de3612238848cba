"""Every backend the LM train stage accepts trains: one step, finite loss, gradients reach SKA."""

import importlib.util
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from stages.ska.lm_train import SPEC
from studies.ska.banks import add_signatures, build_bank
from studies.ska.model import CausalLM, LMConfig

V, L, W, STRIDE, K = 13, 16, 4, 2, 8


def _skip_unavailable(backend: str) -> None:
    if backend == "keops":
        if importlib.util.find_spec("pykeops") is None:
            pytest.skip("pykeops is not installed")
        if shutil.which(os.environ.get("CXX", "g++")) is None:
            pytest.skip("pykeops needs a C++ compiler on PATH")
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")


def test_lm_train_accepts_every_kernel_backend():
    assert SPEC.choices["backend"] == ("python", "keops", "triton")


@pytest.mark.parametrize("backend", SPEC.choices["backend"])
def test_one_training_step_per_backend_has_finite_loss_and_reaches_ska_params(backend):
    _skip_unavailable(backend)
    torch.manual_seed(0)
    cfg = LMConfig(V, L, d_model=16, n_layers=1, n_heads=2, window=W, stride=STRIDE, minhash_k=K, backend=backend)
    model = CausalLM(cfg)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, V, (2, L + 1), generator=g)
    x, y = tokens[:, :-1], tokens[:, 1:]
    bank = add_signatures(build_bank(x, W, STRIDE), k=K, seed=0, vocab_size=V)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(x, bank).reshape(-1, V), y.reshape(-1))
    loss.backward()
    value = loss.item()
    assert 1.0 < value < 2 * torch.log(torch.tensor(float(V))).item()  # finite, near log V at init
    ska = {n: p for n, p in model.named_parameters() if ".sets." in n or n.startswith("atoms")}
    assert {n.rsplit(".", 2)[-2] for n in ska if n.endswith("weight")} >= {"w_v", "w_g", "w_d", "a", "b"}
    for name, p in ska.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the kernel's inputs (set values and the content projections) get a non-zero gradient
    for part in ("w_v", "a", "b", "atoms"):
        grads = [p.grad.abs().sum() for n, p in ska.items() if f"{part}." in n or n.startswith(part)]
        assert grads and float(sum(grads)) > 0, part
    opt.step()
