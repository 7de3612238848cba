"""DDPM with SKA/SDPA denoisers: schedule, q_sample, banks from x_t only, ε-MSE, DDIM; FID
and its real-vs-real floor; selection on val ε-MSE, and the stages: train reads val only,
evaluate reports test."""

import inspect
import math

import pytest
import torch
import yaml

from pipeline.codehash import ROOT
from pipeline.spec import Context, Params, Upstream
from stages.common import images as images_stage
from stages.common.trained import load_trained
from stages.ska import diffusion_evaluate, diffusion_train, fid_features
from studies.data.images import make_images
from studies.ska import diffusion as dm
from studies.ska import text_diffusion as td
from studies.ska.fid import FeatureNet, fid, frechet_distance, gaussian_stats, real_vs_real_fid, train_feature_net

SMALL = dict(d_model=32, n_layers=2, n_heads=2, minhash_k=16)


def _image_model(seed=0, **kw):
    torch.manual_seed(seed)
    return dm.Denoiser(dm.DiffusionConfig(**{**SMALL, "T": 100, **kw}))


def _text_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(modality="text", vocab_size=20, seq_len=16, d_embed=8, window=4, stride=2, T=100)
    return dm.Denoiser(dm.DiffusionConfig(**{**SMALL, **cfg, **kw}))


def _text_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 20, (n, 16), generator=g)
    tok[:, 1::2] = (tok[:, ::2] + 1) % 20  # learnable structure: odd token = even token + 1
    return tok


def test_cosine_alpha_bar_is_strictly_decreasing_inside_zero_one():
    for T in (10, 200, 1000):
        ab = dm.cosine_alpha_bar(T)
        assert ab.shape == (T,) and ab.dtype == torch.float64
        assert (ab > 0).all() and (ab < 1).all()
        assert (ab[1:] < ab[:-1]).all()
    ab = dm.cosine_alpha_bar(1000)
    s = 0.008
    f = lambda t: math.cos((t / 1000 + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    assert abs(float(ab[499]) - f(500) / f(0)) < 1e-9  # unclipped part: ᾱ_t = f(t+1)/f(0)
    assert float(ab[0]) > 0.999 and float(ab[-1]) < 1e-4


def test_q_sample_matches_the_formula_and_keeps_unit_variance():
    ab = dm.cosine_alpha_bar(50)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4000, 3, generator=g), torch.randn(4000, 3, generator=g)
    t = torch.full((4000,), 20)
    xt = dm.q_sample(x0, t, eps, ab)
    a = float(ab[20])
    assert torch.allclose(xt, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, atol=1e-6)
    assert abs(float(xt.var()) - 1.0) < 0.05  # variance preserving
    t_mix = torch.tensor([0, 49])
    xt2 = dm.q_sample(x0[:2], t_mix, eps[:2], ab)  # per-example timesteps broadcast over features
    assert torch.allclose(xt2[1], ab[49].float().sqrt() * x0[1] + (1 - ab[49].float()).sqrt() * eps[1])


def test_bank_functions_take_only_x_t():
    for fn in (dm.Denoiser.noisy_bank, dm.Denoiser.noisy_atoms, dm.Denoiser.forward):
        params = list(inspect.signature(fn).parameters)
        assert "x_t" in params and not {"x0", "x_0", "clean", "target"} & set(params), params


@pytest.mark.parametrize("make", [_image_model, _text_model])
def test_training_loss_builds_the_bank_from_x_t_never_x_0(make, monkeypatch):
    model = make(attention="ska")
    data = make_images(4, seed=0)[0] if model.cfg.modality == "image" else _text_data(4)
    x0 = model.clean(data)
    g = torch.Generator().manual_seed(1)
    t = torch.full((4,), 60)
    eps1, eps2 = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    seen = []
    original = model.noisy_bank
    monkeypatch.setattr(model, "noisy_bank", lambda x_t: seen.append(x_t.clone()) or original(x_t))
    dm.diffusion_loss(model, x0, t, eps1)
    dm.diffusion_loss(model, x0, t, eps2)
    assert torch.equal(seen[0], dm.q_sample(x0, t, eps1, model.alpha_bar))
    assert not torch.equal(seen[0], x0)
    atoms1, atoms2, clean = (model.noisy_atoms(x) for x in (seen[0], seen[1], x0))
    assert not torch.equal(atoms1, atoms2)  # same x_0, other noise: other sets
    assert not torch.equal(atoms1, clean)  # and not the clean target's sets


def test_text_atoms_round_to_the_nearest_token_at_any_scale():
    model = _text_model()
    tok = _text_data(5)
    x0 = model.clean(tok)  # [5, 16, 8]
    assert torch.equal(model.nearest_tokens(x0), tok)
    assert torch.equal(model.nearest_tokens(0.05 * x0), tok)  # √ᾱ_t scaling cancels
    norms = model.table.norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(8)))


def test_image_atoms_of_x_t_use_the_zero_cut_in_signed_space():
    model = _image_model(attention="ska")
    x = torch.full((1, 3, 32, 32), -1.0)
    x[0, :, :4, :4] = 0.2  # patch 0 above 0 (= above 0.5 in [0, 1])
    atoms = model.noisy_atoms(x)
    assert atoms[0, 0] == 1 and atoms[0, 1] == 2 and atoms.shape == (1, 64)


@pytest.mark.parametrize(
    "make, kw",
    [
        (_image_model, dict(attention="sdpa")),
        (_image_model, dict(attention="ska")),
        (_text_model, dict(attention="ska")),
    ],
)
def test_eps_mse_decreases_over_a_short_training(make, kw):
    model = make(**kw)
    image = model.cfg.modality == "image"
    train = make_images(64, seed=1)[0] if image else _text_data(64, seed=1)
    held = make_images(32, seed=2)[0] if image else _text_data(32, seed=2)
    before = dm.eps_mse(model, held, seed=0)
    assert abs(before["eps_mse"] - 1.0) < 0.1  # zero-initialised output: ε̂ = 0
    result = dm.train_diffusion(model, train, steps=40, batch_size=16, lr=3e-3, warmup_steps=4, seed=0)
    assert not result.restored and len(result.history["train"]) == 40  # no val: the last state
    after = dm.eps_mse(model, held, seed=0)
    assert after["eps_mse"] < before["eps_mse"] - 0.08, (before, after)  # measured drops 0.15-0.5
    assert set(after) == {f"eps_mse_t{t}" for t in dm.eval_timesteps(100)} | {"eps_mse", "imgs_per_s"}
    assert after == {**dm.eps_mse(model, held, seed=0), "imgs_per_s": after["imgs_per_s"]}  # seeded


def test_selection_keeps_the_state_with_the_lowest_val_eps_mse():
    model = _image_model(attention="sdpa")
    train, val = make_images(32, seed=1)[0], make_images(12, seed=2)[0]
    result = dm.train_diffusion(model, train, val, steps=12, batch_size=16, lr=3e-2, warmup_steps=1, eval_every=3)
    evals = result.history["eval"]
    assert [e["step"] for e in evals] == [2, 5, 8, 11]
    assert result.best["eps_mse"] == min(e["eps_mse"] for e in evals)
    assert dm.eps_mse(model, val, seed=0)["eps_mse"] == result.best["eps_mse"]  # the kept state, same noise
    print("val eps_mse per evaluation", [round(e["eps_mse"], 4) for e in evals], "restored", result.restored)


def test_n_params_counts_trainable_parameters_only():
    model = _text_model()
    assert model.n_params() == sum(p.numel() for p in model.parameters())  # the frozen table E is a buffer
    model.pos.requires_grad_(False)
    assert model.n_params() == sum(p.numel() for p in model.parameters()) - model.pos.numel()


def test_ddim_sampler_shapes_range_and_seed():
    model = _image_model(attention="ska")
    with torch.no_grad():
        model.out.weight.normal_(0, 0.1)  # a non-zero ε̂, so the steps do something
    a = dm.ddim_sample(model, 3, steps=4, seed=5)
    b = dm.ddim_sample(model, 3, steps=4, seed=5, batch_size=2)  # one noise stream, any batching
    assert a.shape == (3, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(a, dm.ddim_sample(model, 3, steps=4, seed=5))
    text = dm.ddim_sample(_text_model(), 2, steps=3, seed=0)
    assert text.shape == (2, 16, 8)


@pytest.mark.parametrize(
    "kw, field",
    [(dict(modality="audio"), "modality"), (dict(T=0), "T"), (dict(patch=3), "patch"), (dict(window=0), "window")],
)
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ValueError, match=rf"DiffusionConfig\.{field}"):
        dm.DiffusionConfig(**kw)


# --- FID with the in-pipeline feature net -------------------------------------------------


@pytest.fixture(scope="module")
def feature_net():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = make_images(400, seed=(9, 0))
    net = train_feature_net(x, y, steps=40, seed=0)
    torch.set_num_threads(before)
    return net


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    a, b = torch.tensor([1.0, 4.0, 9.0, 0.0]), torch.tensor([4.0, 1.0, 9.0, 2.0])
    mu1, mu2 = torch.zeros(4), torch.tensor([1.0, 0.0, 2.0, 0.0])
    expect = 5.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum())
    got = frechet_distance(mu1, torch.diag(a).double(), mu2, torch.diag(b).double())
    assert abs(got - expect) < 1e-9


def test_fid_properties(feature_net):
    real, _ = make_images(200, seed=(9, 1))
    other, _ = make_images(200, seed=(9, 2))
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    same = fid(feature_net, real, real)
    halves = fid(feature_net, real, other)
    far = fid(feature_net, real, noise)
    print(f"FID same {same:.2e}, independent halves {halves:.3f}, noise {far:.1f}")
    assert same < 1e-6
    assert abs(halves - fid(feature_net, other, real)) < 1e-6 * max(1.0, halves)  # symmetric
    assert far > 10 * halves and far > halves + 1.0


def test_real_vs_real_fid_is_the_floor_between_identical_and_shifted_sets(feature_net):
    a, _ = make_images(150, seed=(9, 3))
    b, _ = make_images(150, seed=(9, 4))
    identical = real_vs_real_fid(feature_net, torch.cat([a, a]), 150)
    disjoint = real_vs_real_fid(feature_net, torch.cat([a, b]), 150)
    darker = (b.float() * 0.6).round().to(torch.uint8)  # the same images, a global shift
    shifted = real_vs_real_fid(feature_net, torch.cat([a, darker]), 150)
    print(f"real-vs-real FID: identical {identical:.2e}, disjoint {disjoint:.3f}, shifted {shifted:.3f}")
    assert identical < 1e-6
    assert 0.0 < disjoint < shifted / 3, (disjoint, shifted)
    assert disjoint == fid(feature_net, a, b)  # real[:n] against real[n:2n]
    assert real_vs_real_fid(feature_net, torch.cat([a, b, darker]), 150) == disjoint  # 2n images only
    with pytest.raises(ValueError, match="needs 300 real images, got 299"):
        real_vs_real_fid(feature_net, torch.cat([a, b])[:299], 150)


def test_gaussian_stats_and_feature_net_shapes():
    net = FeatureNet()
    x, _ = make_images(5, seed=0)
    feats = net.features(x)
    assert feats.shape == (5, 64) and net(x).shape == (5, 10)
    mu, cov = gaussian_stats(feats)
    assert torch.allclose(cov, torch.cov(feats.double().T))
    with pytest.raises(ValueError):
        gaussian_stats(feats[:1])


# --- text: token recovery and the no-oracle property ---------------------------------------

# Four rows of norm 2 in the plane; ᾱ = 0.64, so x̂_0 = (x_t − 0.6·ε̂)/0.8 = x_0 − 0.75·(ε̂ − ε).
TABLE = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
AB, T0 = torch.tensor([0.64], dtype=torch.float64), torch.tensor([0])
IDS = torch.tensor([[0, 1, 2, 3]])
EPS = torch.tensor([[[0.5, -1.0], [1.0, 1.0], [-0.3, 0.2], [0.0, 0.7]]])


def test_token_recovery_on_fixed_predictions():
    x0 = TABLE[IDS]
    x_t = dm.q_sample(x0, T0, EPS, AB)
    assert torch.allclose(x_t, 0.8 * x0 + 0.6 * EPS)
    acc = lambda eps_hat: float(td.token_recovery(x_t, eps_hat, T0, IDS, TABLE, AB).float().mean())  # noqa: E731
    assert torch.allclose(td.predict_x0(x_t, EPS, T0, AB), x0, atol=1e-6)
    assert acc(EPS) == 1.0  # perfect ε̂: x̂_0 = x_0
    # ε̂ off by δ = (−8/3, 8/3) at position 1 only: x̂_0[1] = (0, 2) − 0.75·δ = (2, 0) = row 0
    wrong = EPS.clone()
    wrong[0, 1] += torch.tensor([-8 / 3, 8 / 3])
    assert torch.allclose(td.predict_x0(x_t, wrong, T0, AB)[0, 1], TABLE[0], atol=1e-5)
    assert acc(wrong) == 0.75
    # every position pointed at the next row: nothing recovered
    shifted = EPS + (x0 - TABLE[(IDS + 1) % 4]) / 0.75
    assert acc(shifted) == 0.0
    # ε̂ = 0 is rounding x_t itself: x̂_0 = x_0 + 0.75·ε, here still nearest to the true rows
    assert acc(torch.zeros_like(EPS)) == 1.0
    # a constant error δ = (8/3, 8/3): x̂_0 = x_0 − (2, 2); rows 0, 1 land exactly on rows 3, 2,
    # rows 2, 3 move to (−4, −2), (−2, −4), still nearest themselves (d² 8 vs 16)
    assert acc(EPS + 8 / 3) == 0.5


def test_token_recovery_uses_each_examples_own_timestep():
    ab = dm.cosine_alpha_bar(100)
    x0 = TABLE[IDS.expand(2, 4)]
    eps = torch.cat([EPS, -EPS])
    t = torch.tensor([10, 90])
    x_t = dm.q_sample(x0, t, eps, ab)
    assert torch.allclose(td.predict_x0(x_t, eps, t, ab), x0, atol=1e-4)
    assert td.token_recovery(x_t, eps, t, IDS.expand(2, 4), TABLE, ab).all()
    assert td.level_timesteps(200) == [50, 100, 150] and td.level_timesteps(4) == [1, 2, 3]


def test_token_accuracy_of_an_untrained_denoiser_is_the_rounding_baseline():
    model = _text_model(attention="ska")  # zero-initialised output: ε̂ = 0, x̂_0 = x_t/√ᾱ_t
    held = _text_data(8, seed=3)
    got = td.token_accuracy(model, held, seed=0, batch_size=3)
    steps = td.level_timesteps(100)
    assert set(got) == {f"token_acc{s}_t{t}" for t in steps for s in ("", "_noisy")} | {"token_acc", "token_acc_noisy"}
    for t in steps:
        assert got[f"token_acc_t{t}"] == got[f"token_acc_noisy_t{t}"]
    accs = [got[f"token_acc_noisy_t{t}"] for t in steps]
    assert accs[0] > 0.9 and accs[0] >= accs[1] >= accs[2]  # noisier: fewer tokens readable
    assert got == td.token_accuracy(model, held, seed=0)  # seeded, any batching


def test_text_denoiser_output_depends_on_x_t_not_on_the_x_0_behind_it():
    """The oracle defect would be a bank (or anything) built from x_0 / the clean ids: here two
    different x_0 with noise chosen to give the same x_t must give the same atoms and ε̂."""
    model = _text_model(attention="ska")
    with torch.no_grad():
        model.out.weight.normal_(0, 0.1)  # a non-zero ε̂
    ids_a = _text_data(4)
    ids_b = (ids_a + 7) % 20
    x0_a, x0_b = model.clean(ids_a), model.clean(ids_b)
    t = torch.full((4,), 60)
    eps_a = torch.randn(x0_a.shape, generator=torch.Generator().manual_seed(2))
    ab = model.alpha_bar[60]
    x_t = dm.q_sample(x0_a, t, eps_a, model.alpha_bar)
    eps_b = (x_t - ab.sqrt() * x0_b) / (1 - ab).sqrt()  # the noise that turns x0_b into the same x_t
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    banks = []
    original = model.noisy_bank
    model.noisy_bank = lambda x: banks.append(original(x)) or banks[-1]
    loss_a = dm.diffusion_loss(model, x0_a, t, eps_a)
    loss_b = dm.diffusion_loss(model, x0_b, t, eps_b)
    assert torch.allclose(seen[0][0], seen[1][0], atol=1e-5)  # same x_t reached the model
    assert torch.equal(banks[0].values, banks[1].values)
    assert torch.equal(banks[0].signatures, banks[1].signatures)
    assert torch.allclose(seen[0][1], seen[1][1], atol=1e-4)  # same ε̂
    assert not torch.isclose(loss_a, loss_b)  # only the target moved
    assert not torch.equal(model.nearest_tokens(x_t), ids_b)  # the atoms are not the clean ids of b


# --- the stages: selection reads val only, the report is on test ------------------------


def _context(stage, params: dict, out, **upstream):
    """The Context a node of ``stage`` gets: its declared params, upstream dirs by stage name."""
    ups = tuple(Upstream(stage=name, slug=name, path=path, cells=("cell",)) for name, path in upstream.items())
    out.mkdir()
    values = Params({k: params[k] for k in stage.SPEC.reads}, stage.SPEC.name)
    return Context(params=values, out=out, upstream=ups, study="t")


def _only_splits(src, dst, keep: tuple[str, ...]):
    """A copy of an images node with only the ``keep`` splits: reading any other is a KeyError."""
    dst.mkdir()
    data = torch.load(src / "images.pt", weights_only=True)
    torch.save({k: v for k, v in data.items() if k.split("_")[0] in keep}, dst / "images.pt")
    return dst


def test_stages_select_on_val_and_report_eps_mse_and_fid_on_test(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]["ska_diffusion"]["params"]
    params |= {"n_train": 48, "n_val": 12, "n_test": 20, **SMALL, "minhash_k": 8, "T": 20, "fid_steps": 3}
    params |= {"steps": 6, "batch_size": 16, "warmup_steps": 1, "eval_every": 2, "n_fid_samples": 10, "ddim_steps": 2}
    images_stage.run(_context(images_stage, params, tmp_path / "images"))
    no_test = _only_splits(tmp_path / "images", tmp_path / "train_view", ("train", "val"))
    fid_features.run(_context(fid_features, params, tmp_path / "fid_features", images=no_test))
    train_metrics = diffusion_train.run(_context(diffusion_train, params, tmp_path / "train", images=no_test))
    ups = {"images": _only_splits(tmp_path / "images", tmp_path / "eval_view", ("test",))}
    ups |= {"fid_features": tmp_path / "fid_features", "train": tmp_path / "train"}
    metrics = diffusion_evaluate.run(_context(diffusion_evaluate, params, tmp_path / "evaluate", **ups))

    model, _ = load_trained(tmp_path / "train", diffusion_train.build_model)
    val = images_stage.load_split(tmp_path / "images", "val")[0]
    test = images_stage.load_split(tmp_path / "images", "test")[0]
    assert train_metrics["best_val_eps_mse"] == dm.eps_mse(model, val, seed=params["train_seed"])["eps_mse"]
    assert train_metrics["n_params"] == model.n_params() > 0
    assert metrics["n_test"] == 20
    assert metrics["eps_mse"] == dm.eps_mse(model, test, seed=params["eval_seed"])["eps_mse"]
    net = FeatureNet()
    net.load_state_dict(torch.load(tmp_path / "fid_features" / "feature_net.pt", weights_only=True))
    assert metrics["fid_real_vs_real"] == fid(net.eval(), test[:10], test[10:20]) > 0
    assert math.isfinite(metrics["fid_in_pipeline_net"])
    params["n_fid_samples"] = 11  # the floor needs two disjoint halves of test
    with pytest.raises(ValueError, match="n_fid_samples=11 needs n_test >= 22"):
        diffusion_evaluate.run(_context(diffusion_evaluate, params, tmp_path / "evaluate2", **ups))
