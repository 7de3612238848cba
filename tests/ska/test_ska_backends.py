"""The keops and triton SKA backends against the python reference: outputs and gradients.

Triton: on a machine without a CUDA device, Triton runs kernels only through its interpreter,
and only if TRITON_INTERPRET=1 is set before ``triton`` itself is first imported (its own
library functions, tl.max & co., are decorated then). The ``triton_device`` fixture below
sets it while this module's tests run (the interpreter reads it again at every launch) and
restores the environment afterwards; with a CUDA device
it leaves it alone and the kernels compile for the GPU. The interpreter is slow, so shapes
here are tiny (S <= 40 sets). What the interpreter cannot show — that the kernels lower for a
real GPU — one test checks by compiling them to sm_90 cubins (no GPU needed).

KeOps: compiles each new formula with g++ (~12 s the first time, then cached on disk in
KEOPS_CACHE_FOLDER, see ``keops.py``); the cases below need 8 formulas. The tests skip, with the
reason, where pykeops or a C++ compiler is missing.

Tolerances. fp32: |got − want| <= 1e-5·|want| + 1e-5·max|want| per tensor (relative 1e-5,
with an absolute floor scaled to the tensor for entries near 0). fp16/bf16 (triton, and the
python backend by casting) against the fp32 python reference on the same input values: fp16
within atol = rtol = 1e-3; bf16 within atol = rtol = 1e-3 *plus half a bf16 ulp of the
reference* — returning a bfloat16 at all rounds by up to 2^-9 relative (1.95e-3 > 1e-3), so
plain 1e-3 fails for the python reference itself (measured: up to 3x the bound for values
near 2). Set SKA_PARITY_REPORT=path to get the measured errors as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from studies.ska.banks import P61
from studies.ska.kernels import BACKENDS, SCORE_MODES, SUPPORTED, check_precision, get_backend, set_attend

KW = dict(gamma=0.3, beta=0.5, tau=0.7, eta=1.3)
# (seed, S, k, a whole sequence without valid sets); S = 12..40, 40 not a multiple of the tile
CASES = [(0, 12, 8, False), (1, 23, 64, False), (2, 40, 8, True), (3, 37, 64, False)]
ERRORS: dict[str, dict[str, float]] = {}


def make_inputs(seed, S, k, dead_seq=False, B=2, D=6, Dv=5):
    """Random sets with heavy signature collisions, unsorted ends, padding and a size-0 set."""
    g = torch.Generator().manual_seed(seed)
    # near 2^61 and 7 apart: equal in float32, so only an exact comparison gets J right
    sig = P61 - 1 - 7 * torch.randint(0, 3, (B, S, k), generator=g)
    size = torch.randint(1, 9, (B, S), generator=g).float()
    size[0, 1] = 0.0  # exercises the clamp in intersect_norm
    end = torch.randint(1, 40, (B, S), generator=g)  # ties and any order
    valid = torch.rand(B, S, generator=g) > 0.15
    valid[1, -3:] = False  # padding sets
    if dead_seq:
        valid[0] = False  # every query of sequence 0 has no allowed key: Z = 0, never NaN
    qc, kc = torch.randn(B, S, D, generator=g), torch.randn(B, S, D, generator=g)
    v = torch.randn(B, S, Dv, generator=g)
    w = torch.randn(B, S, Dv, generator=g)  # upstream gradient
    return (sig, size, end, valid), (qc, kc, v), w


def run(backend, fixed, x, w, *, precision=None, device="cpu", **kw):
    """(Z, dqc, dkc, dv) as float32 CPU tensors (None where the input gets no gradient)."""
    fixed = [t.to(device) for t in fixed]
    x = [None if t is None else t.to(device).detach().requires_grad_(True) for t in x]
    z = set_attend(*fixed, *x, backend=backend, precision=precision, **kw)
    (z.float() * w.to(device)).sum().backward()
    return [z.detach().float().cpu()] + [None if t is None or t.grad is None else t.grad.float().cpu() for t in x]


def record(tag, name, got, want, bound):
    err = (got - want).abs()
    big = want.abs() > 1e-3 * max(want.abs().max().item(), 1e-30)
    e = ERRORS.setdefault(f"{tag} {name}", {"max_abs": 0.0, "max_rel": 0.0, "max_err_over_bound": 0.0})
    e["max_abs"] = max(e["max_abs"], err.max().item() if err.numel() else 0.0)
    if big.any():
        e["max_rel"] = max(e["max_rel"], (err[big] / want.abs()[big]).max().item())
    e["max_err_over_bound"] = max(e["max_err_over_bound"], (err / bound).max().item() if err.numel() else 0.0)


def compare(tag, got, want, bound_fn):
    for name, a, b in zip(("Z", "dqc", "dkc", "dv"), got, want, strict=True):
        assert (a is None) == (b is None), f"{name}: gradient presence differs from python"
        if a is None:
            continue
        assert torch.isfinite(a).all(), f"{name} has NaN/inf"
        bound = bound_fn(b)
        record(tag, name, a, b, bound)
        bad = (a - b).abs() > bound
        assert not bad.any(), f"{tag} {name}: max err {(a - b).abs().max():.3e}, {int(bad.sum())} entries out of bound"


def fp32_bound(want):
    scale = want.abs().max().item() if want.numel() else 0.0
    return 1e-5 * want.abs() + 1e-5 * max(scale, 1e-6)


MANTISSA = {torch.float16: 10, torch.bfloat16: 7}


def lowp_bound(dtype):
    def bound(want):
        out = 1e-3 + 1e-3 * want.abs()
        if dtype == torch.bfloat16:  # half an ulp: the final rounding to bf16, 2^-9 relative
            out = out + torch.ldexp(torch.ones_like(want), torch.frexp(want).exponent - 2 - MANTISSA[dtype])
        return out

    return bound


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("SKA_PARITY_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(ERRORS, f, indent=1, sort_keys=True)


@pytest.fixture(scope="module")
def triton_device():
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    cuda = torch.cuda.is_available()
    before = os.environ.get("TRITON_INTERPRET")
    if not cuda:  # before triton itself is imported; the interpreter reads it again at every launch
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        from studies.ska.kernels import triton_kernel

        if not cuda and not triton_kernel.INTERPRET:
            pytest.skip("triton was imported earlier in this process without TRITON_INTERPRET=1, and there is no GPU")
        yield "cuda" if cuda else "cpu"
    finally:  # this module's tests are done with it
        if before is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = before


@pytest.fixture(scope="module")
def keops_device():
    if importlib.util.find_spec("pykeops") is None:  # not imported here: keops.py sets its cache first
        pytest.skip("pykeops is not installed")
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"pykeops compiles its formulas with a C++ compiler and {cxx!r} is not on PATH")
    from studies.ska.kernels import keops  # noqa: F401

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_for(request, backend):
    return request.getfixturevalue(f"{backend}_device") if backend != "python" else "cpu"


# ---------------------------------------------------------------- registry and precision table


def test_importing_the_kernels_package_imports_neither_triton_nor_pykeops():
    code = (
        "import sys, studies.ska.kernels as k; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('triton', 'pykeops', 'keopscore')]; "
        "assert not bad, bad; assert list(k.BACKENDS) == ['python', 'keops', 'triton'], list(k.BACKENDS)"
    )
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.getcwd())


def test_unknown_backend_and_unsupported_precision_name_what_exists():
    assert set(BACKENDS) == {"python", "keops", "triton"} and set(SUPPORTED) == set(BACKENDS)
    with pytest.raises(ValueError, match="available: python, keops, triton"):
        get_backend("cuda_graphs")
    with pytest.raises(ValueError, match=r"'keops' does not support precision 'bf16'.*keops: fp32.*triton: fp32, fp16"):
        check_precision("keops", "bf16")
    with pytest.raises(ValueError, match="available: fp32, fp16, bf16"):
        check_precision("python", "fp8")
    (sig, size, end, valid), (qc, kc, v), _ = make_inputs(0, 6, 8)
    args = (sig, size, end, valid, qc, kc, v)
    for precision, vals in (("fp16", args), (None, args[:4] + tuple(t.bfloat16() for t in args[4:]))):
        with pytest.raises(ValueError, match="keops: fp32"):  # raised before pykeops is imported
            set_attend(*vals, backend="keops", precision=precision, **KW, score_mode="delta_plus_dot", causal=True)
    assert check_precision("python", "bf16") == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_on_cpu_without_the_interpreter_is_an_error_not_a_fallback():
    code = (
        "import torch; from studies.ska.kernels import set_attend\n"
        "z = torch.zeros(1, 3, 4); e = torch.arange(1, 4)[None]; s = torch.zeros(1, 3, 8, dtype=torch.long)\n"
        "try:\n"
        "    set_attend(s, torch.ones(1, 3), e, torch.ones(1, 3, dtype=torch.bool), None, None, z, backend='triton',"
        " gamma=.3, beta=0., tau=1., eta=1., score_mode='delta_rbf', causal=True)\n"
        "except ValueError as err:\n"
        "    assert 'TRITON_INTERPRET' in str(err) and 'python, keops' in str(err), err\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.getcwd())


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_compile_for_an_h100_without_one(tmp_path):
    """The interpreter cannot tell whether the kernels lower for a GPU: compile them to cubins."""
    code = (
        "from studies.ska.kernels.triton_kernel import compile_for_gpu\n"
        "for precision, sig_mode, content in (('bf16', 1, True), ('fp32', 2, False), ('fp16', 0, True)):\n"
        "    out = compile_for_gpu(90, precision, sig_mode, content)\n"
        "    assert all(len(k.asm['cubin']) > 0 for k in out.values()), out\n"
    )
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # a real compile, not a cached one
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, env=env, cwd=os.getcwd())


# ---------------------------------------------------------------- fp32 parity


@pytest.mark.parametrize("backend", ["triton", "keops"])
@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-S{c[1]}-k{c[2]}" for c in CASES])
@pytest.mark.parametrize("score_mode", SCORE_MODES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_fp32_outputs_and_gradients_match_python(request, backend, case, score_mode, causal):
    device = device_for(request, backend)
    seed, S, k, dead = case
    fixed, x, w = make_inputs(seed, S, k, dead)
    kw = dict(KW, score_mode=score_mode, causal=causal)
    want = run("python", fixed, x, w, **kw)
    got = run(backend, fixed, x, w, device=device, **kw)
    compare(f"{backend} fp32", got, want, fp32_bound)
    if dead:
        assert torch.equal(got[0][0], torch.zeros_like(got[0][0]))


@pytest.mark.parametrize("backend", ["triton", "keops"])
def test_beta_zero_and_missing_projections_match_python(request, backend):
    device = device_for(request, backend)
    fixed, (qc, kc, v), w = make_inputs(5, 19, 8)
    for mode, q, kk in (("delta_plus_dot", None, None), ("intersect_plus_dot", None, None), ("dot", qc, kc)):
        kw = dict(KW, beta=0.0, score_mode=mode, causal=True)  # dot with beta 0: uniform weights
        want = run("python", fixed, (q, kk, v), w, **kw)
        got = run(backend, fixed, (q, kk, v), w, device=device, **kw)
        compare(f"{backend} fp32", got, want, fp32_bound)


# ---------------------------------------------------------------- fp16 / bf16


@pytest.mark.parametrize("backend", ["python", "triton"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("score_mode", SCORE_MODES)
def test_low_precision_matches_the_fp32_reference(request, backend, precision, score_mode):
    device = device_for(request, backend)
    dtype = check_precision(backend, precision)
    for seed, S, k, dead in (CASES[2],):
        fixed, x, w = make_inputs(seed, S, k, dead)
        x = [t.to(dtype).float() for t in x]  # values both runs can hold exactly
        w = w.to(dtype).float()  # Z's gradient arrives in Z's dtype
        for causal in (True, False):
            kw = dict(KW, score_mode=score_mode, causal=causal)
            want = run("python", fixed, x, w, **kw)
            got = run(backend, fixed, x, w, precision=precision, device=device, **kw)
            compare(f"{backend} {precision}", got, want, lowp_bound(dtype))


# ---------------------------------------------------------------- benchmark helper


def test_bench_measure_reports_the_plan_fields():
    from studies.ska.bench import measure

    r = measure("python", B=2, L=64, D=8, k=16, window=8, stride=4, warmup=1, iters=2)
    for key in ("ms_per_step", "steps_per_s", "wall_s", "peak_mem_mb", "B", "L", "H", "D", "k"):
        assert key in r
    assert r["S"] == 15 and r["avg_sets_per_seq"] == 15 and 1 <= r["avg_set_size"] <= 8
    assert r["ms_per_step"] > 0 and r["peak_mem_mb"] >= 0
    with pytest.raises(ValueError, match="keops: fp32"):
        measure("keops", B=1, L=32, D=8, k=8, window=8, stride=4, precision="bf16")


def test_bench_block_scope_times_the_whole_layer_and_costs_more_than_the_kernel():
    from studies.ska.bench import measure, measure_dot

    shape = dict(B=2, L=64, D=16, k=16, window=8, stride=4, warmup=1, iters=3)
    kernel, block = (measure("python", **shape, scope=s) for s in ("kernel", "block"))
    assert (kernel["scope"], block["scope"]) == ("kernel", "block") and block["S"] == kernel["S"] == 15
    assert block["ms_per_step"] > kernel["ms_per_step"]  # pooling, projections and router on top
    dot = measure_dot("sdpa", B=2, L=64, D=16, warmup=1, iters=1, scope="block")
    assert dot["scope"] == "block" and dot["ms_per_step"] > 0
    with pytest.raises(ValueError, match="choose one of kernel, block"):
        measure("python", **shape, scope="layer")
