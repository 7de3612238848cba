"""The SKA attention maps read for plotting: one pair per layer, softmax rows that sum to 1 over
exactly the allowed entries, the module's own output rebuilt from them, and the model's logits
the same with the hooks on as off."""

import pytest
import torch

from studies.ska.attention_maps import capture, plot_maps, set_attention_weights
from studies.ska.banks import add_signatures, build_bank
from studies.ska.model import CausalLM, LMConfig
from studies.ska.vit import ViT, ViTConfig

V, L, W, STRIDE, K = 11, 20, 4, 2, 16
CASES = {
    "dense_dot": dict(router_topk=0, score_mode="delta_plus_dot", beta=0.5),
    "top2_adapter_intersect": dict(router_topk=2, adapter_rank=3, score_mode="intersect_plus_dot", beta=0.5),
    "rbf": dict(router_topk=0, score_mode="delta_rbf"),
}


def _model(**kw):
    torch.manual_seed(0)
    shape = dict(vocab_size=V, seq_len=L, d_model=16, n_layers=2, n_heads=2, window=W, stride=STRIDE, minhash_k=K)
    cfg = LMConfig(**shape, **kw)
    model = CausalLM(cfg).eval()
    with torch.no_grad():  # gates off their init, so every path carries signal
        for name, p in model.named_parameters():
            if name.endswith("rho"):
                p.fill_(1.0)
    return model


def _batch(n=3):
    tokens = torch.randint(0, V, (n, L), generator=torch.Generator().manual_seed(1))
    return tokens, add_signatures(build_bank(tokens, W, STRIDE), k=K, seed=3, vocab_size=V).padded()


@pytest.mark.parametrize("case", CASES)
def test_maps_rebuild_the_module_output_and_leave_the_logits_unchanged(case):
    model = _model(**CASES[case])
    tokens, pb = _batch()
    with torch.no_grad():
        plain = model(tokens, pb)
        with capture(model) as maps:
            hooked = model(tokens, pb)
    assert torch.equal(plain, hooked)  # the hooks return nothing: the forward is the model's own
    assert len(maps) == 2  # one pair per layer (SKA has no heads)
    # the module's output from the maps: σ(ρ)·W_o(g @ (w @ W_v Φ^)), at the first layer's input
    sets = model.blocks[0].sets
    x = model.blocks[0].norm_set(model.tok(tokens) + model.pos(torch.arange(L)))
    e = model.atoms(pb.atoms)
    with torch.no_grad():
        w, g = set_attention_weights(sets, x, e, pb)
        v = sets.w_v(torch.nn.functional.normalize(sets.set_features(e, pb), dim=-1, eps=1e-6))
        rebuilt = torch.sigmoid(sets.rho) * sets.w_o(g @ (w @ v))
        assert torch.allclose(rebuilt, sets(x, e, pb), atol=1e-6)
    assert torch.equal(w, maps[0]["sets"]) and torch.equal(g, maps[0]["router"])


@pytest.mark.parametrize("case", CASES)
def test_rows_are_softmax_weights_over_allowed_entries(case):
    model = _model(**CASES[case])
    tokens, pb = _batch()
    with torch.no_grad(), capture(model) as maps:
        model(tokens, pb)
    allowed = pb.valid[:, None, :] & pb.valid[:, :, None] & (pb.end[:, None, :] <= pb.end[:, :, None])
    t1 = torch.arange(1, L + 1)[None, :, None]
    readable = pb.valid[:, None, :] & (pb.end[:, None, :] <= t1)
    for layer in maps:
        w, g = layer["sets"], layer["router"]
        assert w.shape == (3, pb.valid.shape[1], pb.valid.shape[1]) and g.shape == (3, L, pb.valid.shape[1])
        assert (w[~allowed] == 0).all() and (g[~readable] == 0).all()  # causal: nothing from later sets
        assert torch.allclose(w.sum(-1)[allowed.any(-1)], torch.ones(()))
        assert torch.allclose(g.sum(-1)[readable.any(-1)], torch.ones(()))
        assert (g.sum(-1)[~readable.any(-1)] == 0).all()  # tokens before the first finished window read nothing
        if CASES[case]["router_topk"]:
            assert ((g > 0).sum(-1) <= CASES[case]["router_topk"]).all()


def test_vit_maps_are_non_causal_and_plot_to_a_png(tmp_path):
    torch.manual_seed(0)
    model = ViT(ViTConfig(attention="ska", n_layers=1, d_model=16, n_heads=2, patch=8, window=4, stride=2)).eval()
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    pb = model.bank(images).padded()
    with torch.no_grad(), capture(model) as maps:
        model(images, pb)
    valid = pb.valid[0]
    assert torch.allclose(maps[0]["sets"][0][valid][:, valid].sum(-1), torch.ones(()))
    assert (maps[0]["sets"][0][valid][:, valid] > 0).all()  # every set reads every set, later ones too
    png = plot_maps(maps, pb.valid, "vit", tmp_path / "maps.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert plot_maps([], pb.valid, "sdpa", tmp_path / "none.png") is None


@pytest.mark.parametrize("modality", ["image", "text"])
def test_denoiser_maps_plot_for_ska_and_nothing_for_sdpa(tmp_path, modality):
    """diffusion_attention_figure rebuilds the saved denoiser and plots its maps on a noised example;
    an SDPA denoiser has no SKA layer, so no figure."""
    import json

    from studies.ska.attention_maps import diffusion_attention_figure
    from studies.ska.diffusion import Denoiser, DiffusionConfig

    shape = dict(n_layers=1, d_model=16, n_heads=2, window=4, stride=2, minhash_k=8, T=10)
    shape |= dict(patch=8) if modality == "image" else dict(vocab_size=V, seq_len=L, d_embed=8)
    if modality == "image":
        data = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    else:
        data = torch.randint(0, V, (2, L))
    for attention in ("ska", "sdpa"):
        directory = tmp_path / attention
        directory.mkdir()
        config = shape | {"attention": attention}
        torch.manual_seed(0)
        torch.save(Denoiser(DiffusionConfig(modality=modality, **config)).state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(config))
        png = diffusion_attention_figure(directory, data, modality, directory / "maps.png")
        if attention == "ska":
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        else:
            assert png is None and not (directory / "maps.png").exists()


def test_setrecall_maps_plot_for_ska_and_nothing_for_sdpa(tmp_path):
    """setrecall_attention_figure rebuilds the saved LM and the first validation sequence's bank
    (hashed with the given seed); an SDPA cell has no SKA layer, so no figure."""
    import json

    from studies.ska.attention_maps import setrecall_attention_figure

    torch.save(torch.randint(0, V, (2, L + 1)), tmp_path / "val.pt")  # inputs are tokens[:, :-1]
    for attention in ("ska", "sdpa"):
        directory = tmp_path / attention
        directory.mkdir()
        config = dict(vocab_size=V, seq_len=L, d_model=16, n_layers=1, n_heads=2, window=W, stride=STRIDE)
        config |= dict(minhash_k=K, attention=attention)
        torch.manual_seed(0)
        torch.save(CausalLM(LMConfig(**config)).state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(config))
        png = setrecall_attention_figure(directory, tmp_path, 3, directory / "maps.png")
        if attention == "ska":
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        else:
            assert png is None and not (directory / "maps.png").exists()
