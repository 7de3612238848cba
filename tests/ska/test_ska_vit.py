"""ViT with SDPA or non-causal SKA over patch banks: atoms, banks, shapes, learning, config;
checkpoint selection on val, and the stages: train reads val only, evaluate reports test."""

import pytest
import torch
import yaml

from pipeline.codehash import ROOT
from pipeline.spec import Context, Params, Upstream
from stages.common import images as images_stage
from stages.common.trained import load_trained
from stages.ska import vit_evaluate, vit_train
from studies.data.images import make_images
from studies.ska.model import CausalLM, LMConfig
from studies.ska.vit import (
    ViT,
    ViTConfig,
    evaluate_classifier,
    patch_atoms,
    patchify,
    train_classifier,
    unpatchify,
)

SMALL = dict(d_model=16, n_layers=2, n_heads=2, minhash_k=16)
CASES = {
    "sdpa": dict(attention="sdpa"),
    "ska_conv": dict(attention="ska", mixer="conv"),
    "sdpa_conv": dict(attention="sdpa", mixer="conv"),
    "ska_none_top2_adapter": dict(attention="ska", mixer="none", router_topk=2, adapter_rank=4),
    "ska_cls": dict(attention="ska", pool="cls"),
    "sdpa_cls": dict(attention="sdpa", pool="cls"),
}


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return ViT(ViTConfig(**{**SMALL, **kw}))


def test_patch_atoms_are_position_times_two_plus_brightness_bit():
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, :4, 4:8] = 1.0  # image 0: patch 1 bright
    x[1, :, 28:, 28:] = 0.6  # image 1: last patch (63) bright
    atoms = patch_atoms(x, 4)
    expect = 2 * torch.arange(64).repeat(2, 1)
    expect[0, 1] += 1
    expect[1, 63] += 1
    assert torch.equal(atoms, expect)
    assert torch.equal(patch_atoms((x * 255).to(torch.uint8), 4), atoms)  # uint8 is scaled first
    assert torch.equal(patch_atoms(x * 2 - 1, 4, threshold=0.0), atoms)  # [-1, 1] with cut 0


def test_patchify_round_trips_in_raster_order():
    x = torch.randn(2, 3, 32, 32)
    p = patchify(x, 4)
    assert p.shape == (2, 64, 48)
    assert torch.equal(p[0, 9], x[0, :, 4:8, 4:8].reshape(-1))  # patch (row 1, col 1) = index 9
    assert torch.equal(unpatchify(p, 4, 3, 32), x)


def test_image_bank_has_windows_over_patches_and_vocab_two_per_patch():
    model = _model(attention="ska", window=8, stride=4)
    x, _ = make_images(3, seed=0)
    bank = model.bank(x)
    assert bank.n_seqs == 3 and bank.n_sets == 3 * 15  # starts 0, 4, ..., 56
    assert bank.signatures.shape == (45, 16)
    assert int(bank.values.max()) < 128 and bank.sizes.tolist() == [8] * 45  # 8 distinct patches
    first = bank.values[: int(bank.set_offsets[1])]
    assert torch.equal(first // 2, torch.arange(8))  # set 0 = patches 0..7 (first patch row)


@pytest.mark.parametrize("case", CASES)
def test_logits_shape_and_explicit_bank_matches_the_built_one(case):
    model = _model(**CASES[case]).eval()
    x, _ = make_images(4, seed=1)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all()
        if model.encoder.atoms is not None:
            assert torch.equal(model(x, model.bank(x)), logits)
            assert torch.equal(model(x, model.bank(x).padded()), logits)


def test_ska_is_non_causal_first_token_reads_the_last_patch_set():
    model = _model(attention="ska", mixer="none").eval()
    with torch.no_grad():
        for block in model.encoder.blocks:
            block.sets.rho.fill_(2.0)  # open the SKA gate
        x = torch.zeros(1, 3, 32, 32)
        h = model.embed(patchify(x * 2 - 1, 4)) + model.pos
        dark = model.encoder(h, model.bank(x))
        x[0, :, 28:, 28:] = 1.0  # flips only the last patch's atom; h is kept fixed
        bright = model.encoder(h, model.bank(x))
    assert not torch.allclose(dark[0, 0], bright[0, 0])  # token 0 sees the last set


def test_lm_stays_causal_with_the_shared_ska_layer():
    cfg = LMConfig(vocab_size=11, seq_len=12, d_model=16, n_layers=1, n_heads=2, window=4, stride=2, minhash_k=8)
    torch.manual_seed(0)
    lm = CausalLM(cfg)
    assert all(b.sets.causal for b in lm.blocks)  # default unchanged for the LM


@pytest.mark.parametrize("case", ["sdpa", "ska_conv", "ska_none_top2_adapter"])
def test_both_attentions_reduce_training_loss(case):
    x, y = make_images(32, seed=2)
    model = _model(**CASES[case])
    hist = train_classifier(model, x, y, steps=30, batch_size=16, lr=1e-2, warmup_steps=3, seed=0).history["train"]
    first, last = sum(r["loss"] for r in hist[:3]) / 3, sum(r["loss"] for r in hist[-3:]) / 3
    assert last < first - 0.2, (first, last)  # measured drops 0.30-0.39


def test_training_and_evaluation_are_deterministic():
    x, y = make_images(24, seed=3)
    runs = []
    for _ in range(2):
        model = _model(attention="ska")
        hist = train_classifier(model, x, y, steps=4, batch_size=8, lr=1e-3, warmup_steps=1, seed=7).history["train"]
        runs.append(([r["loss"] for r in hist], evaluate_classifier(model, x, y, batch_size=10)))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1]["top1"] == runs[1][1]["top1"] and runs[0][1]["loss"] == runs[1][1]["loss"]
    assert set(runs[0][1]) == {"top1", "loss", "imgs_per_s", "n"} and runs[0][1]["n"] == 24


def test_selection_keeps_the_state_with_the_best_val_top1():
    """Val labels planted one class off the train labels: the better the model fits train, the
    worse its val top-1, so the kept state is an early one, and it is the one saved."""
    x, y = make_images(40, seed=5)
    val = (x[:20], (y[:20] + 1) % 10)
    model = _model(attention="sdpa")
    result = train_classifier(model, x, y, val, steps=24, batch_size=20, lr=1e-2, warmup_steps=2, eval_every=4)
    evals = result.history["eval"]
    assert [e["step"] for e in evals] == [3, 7, 11, 15, 19, 23] and all(e["n"] == 20 for e in evals)
    best = max(evals, key=lambda e: e["top1"])  # first of the ties, as the loop keeps strict gains
    assert result.best["step"] == best["step"] < 23 and result.restored
    assert result.final["top1"] < result.best["top1"], evals
    assert evaluate_classifier(model, *val)["top1"] == result.best["top1"]  # the restored state


def test_param_counts_differ_only_by_the_mixing_part():
    sdpa, ska = _model(attention="sdpa"), _model(attention="ska", mixer="none")
    D, L = SMALL["d_model"], SMALL["n_layers"]
    attn = 4 * D * D + 4 * D + 2 * D  # qkv + out, with biases + its LayerNorm
    ska_layer = 6 * D * D + 1 + 2 * D  # A, B, W_V, W_g, W_d, W_o + rho + its LayerNorm
    assert sdpa.n_params() - L * attn == ska.n_params() - L * ska_layer - 128 * D  # + atom table
    sdpa.head.weight.requires_grad_(False)
    assert sdpa.n_params() == sum(p.numel() for p in sdpa.parameters()) - D * 10  # trainable only


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(patch=5), "patch"),
        (dict(pool="max"), "pool"),
        (dict(mixer="attn"), "mixer"),
        (dict(window=4, stride=8), "stride"),
        (dict(minhash_k=0), "minhash_k"),
        (dict(attention="flash"), "attention"),
        (dict(d_model=30, n_heads=4), "d_model"),
        (dict(n_classes=0), "n_classes"),
    ],
)
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ValueError, match=rf"ViTConfig\.{field}"):
        ViTConfig(**kw)


def test_mixer_auto_follows_the_lm_and_can_be_forced_for_both():
    has_conv = lambda m: [b.mix is not None for b in m.encoder.blocks]  # noqa: E731
    assert has_conv(_model(attention="ska")) == [True, True]  # auto: conv in SKA blocks
    assert has_conv(_model(attention="sdpa")) == [False, False]  # auto: a standard ViT
    assert has_conv(_model(attention="sdpa", mixer="conv")) == [True, True]  # the control
    assert has_conv(_model(attention="ska", mixer="none")) == [False, False]


def test_ska_usage_reruns_the_metric_with_every_set_branch_off():
    from studies.ska.diagnostics import ska_usage

    x, y = make_images(24, seed=4)
    model = _model(attention="ska", mixer="none").eval()
    for p in (m.rho for m in model.modules() if hasattr(m, "rho")):
        p.data.fill_(0.0)  # gate 0.5: the branch carries signal
    loss = lambda: evaluate_classifier(model, x, y, batch_size=8)["loss"]  # noqa: E731
    usage = ska_usage(model, "loss", loss)
    assert usage["ska_gate_mean"] == 0.5
    assert usage["loss_without_ska"] != loss()  # the branch mattered, and it is back on afterwards
    for p in (m.rho for m in model.modules() if hasattr(m, "rho")):
        p.data.fill_(-float("inf"))  # gate exactly 0: the same as switching the branch off
    assert usage["loss_without_ska"] == pytest.approx(loss(), abs=1e-6)
    assert ska_usage(_model(attention="sdpa"), "loss", loss) == {}


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


def test_stages_select_on_val_and_report_top1_on_test(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]["ska_vit"]["params"]
    params |= {"n_train": 48, "n_val": 24, "n_test": 40, **SMALL, "minhash_k": 8, "steps": 6, "batch_size": 16}
    params |= {"warmup_steps": 1, "eval_every": 2, "eval_batch_size": 16}
    images_stage.run(_context(images_stage, params, tmp_path / "images"))
    without_test = _only_splits(tmp_path / "images", tmp_path / "train_view", ("train", "val"))
    train_metrics = vit_train.run(_context(vit_train, params, tmp_path / "train", images=without_test))
    test_only = _only_splits(tmp_path / "images", tmp_path / "eval_view", ("test",))
    ctx = _context(vit_evaluate, params, tmp_path / "evaluate", images=test_only, train=tmp_path / "train")
    metrics = vit_evaluate.run(ctx)

    model, _ = load_trained(tmp_path / "train", vit_train.build_model)
    val = images_stage.load_split(tmp_path / "images", "val")
    test = images_stage.load_split(tmp_path / "images", "test")
    assert train_metrics["n_val"] == 24 and train_metrics["best_val_top1"] == evaluate_classifier(model, *val)["top1"]
    assert train_metrics["n_params"] == model.n_params() > 0
    assert metrics["n"] == 40 and metrics["top1"] == evaluate_classifier(model, *test)["top1"]
    assert metrics["chance"] == 0.1 and "top1_without_ska" in metrics
