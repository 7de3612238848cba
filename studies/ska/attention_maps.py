"""Attention maps of the SKA branch, read for plotting without touching the model.

``SetKernelAttention`` computes two sets of softmax weights: set-to-set weights ``w`` [B, S, S]
inside the kernel (``kernels.python.set_attend``) and the router ``g`` [B, L, S] by which each
token reads set outputs. Neither is returned, and the model stays as it is (an edit to
``model.py`` would change the code fingerprint of every SKA stage), so ``capture`` registers
forward hooks that recompute both from the inputs each SKA module received, with the module's
own parameters and the reference kernel's scoring. The hooks return nothing, so the model's
output is its own. The recomputation is in float32, whatever ``precision`` the model trains in;
``set_attention_weights`` is tested to reproduce the module's output exactly.

SKA has one set attention per layer (no heads): the maps are per layer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .banks import Bank, PaddedBank
from .kernels.python import allowed_keys, set_scores
from .model import SetKernelAttention


def set_attention_weights(module: SetKernelAttention, x: Tensor, e: Tensor, pb: PaddedBank) -> tuple[Tensor, Tensor]:
    """(set-to-set weights w [B, S, S], router weights g [B, L, S]) that ``module(x, e, pb)`` applies:
    its output is σ(ρ)·W_o(g @ (w @ W_v Φ^)) (dropout aside). Masked entries are exactly 0; a row
    with any allowed entry sums to 1."""
    c = module.cfg
    phi = module.set_features(e, pb)
    phi_hat = F.normalize(phi, dim=-1, eps=1e-6)
    qc, kc = (module.a(phi_hat), module.b(phi_hat)) if module.content else (None, None)
    score = set_scores(pb.sig, pb.size, qc, kc, gamma=c.gamma, beta=c.beta_value, eta=c.eta, score_mode=c.score_mode)
    allowed = allowed_keys(pb.end, pb.valid, module.causal)
    logits = torch.where(allowed, score / c.tau, torch.full_like(score, float("-inf")))
    logits = torch.where(allowed.any(-1, keepdim=True), logits, torch.zeros_like(logits))
    w = torch.softmax(logits, dim=-1) * allowed
    B, L, S = x.shape[0], x.shape[1], pb.valid.shape[1]
    readable = pb.valid[:, None, :].expand(B, L, S)
    if module.causal:
        readable = readable & (pb.end[:, None, :] <= torch.arange(1, L + 1, device=x.device)[None, :, None])
    route = module.w_g(x) @ module.w_d(phi).transpose(1, 2)
    route = route.masked_fill(~readable, float("-inf"))
    if 0 < c.router_topk < S:
        keep = torch.zeros_like(readable).scatter_(-1, route.topk(c.router_topk, dim=-1).indices, True)
        readable = readable & keep
        route = route.masked_fill(~readable, float("-inf"))
    has_set = readable.any(-1, keepdim=True)
    g = torch.softmax(torch.where(has_set, route, torch.zeros_like(route)), -1) * readable
    return w, g


@contextlib.contextmanager
def capture(model: nn.Module) -> Iterator[list[dict[str, Tensor]]]:
    """Within the block, every forward of ``model`` appends, per SKA layer in order, a dict with
    ``sets`` (w) and ``router`` (g), detached, to the yielded list."""
    maps: list[dict[str, Tensor]] = []

    def hook(module, args, _output):
        with torch.no_grad():
            w, g = set_attention_weights(module, *args)
        maps.append({"sets": w.detach().cpu(), "router": g.detach().cpu()})

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, SetKernelAttention)]
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def plot_maps(maps: list[dict[str, Tensor]], valid: Tensor, title: str, png: Path) -> Path | None:
    """One row per SKA layer: set-to-set weights over the example's valid sets, and the router
    (tokens × sets), for the first example of the batch; None for a model without SKA layers
    (an SDPA or attention-free control)."""
    if not maps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = valid[0].cpu()
    fig, axes = plt.subplots(len(maps), 2, figsize=(10, 4 * len(maps)), squeeze=False)
    for i, layer in enumerate(maps):
        sets, router = layer["sets"][0][keep][:, keep], layer["router"][0][:, keep]
        panels = ((axes[i, 0], sets, "set → set", "query set"), (axes[i, 1], router, "router", "token"))
        for ax, m, name, ylabel in panels:
            im = ax.imshow(m.float().numpy(), aspect="auto", interpolation="nearest", cmap="viridis", vmin=0)
            ax.set(title=f"layer {i}: {name}", xlabel="key set", ylabel=ylabel)
            fig.colorbar(im, ax=ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def _load(model: nn.Module, train_dir: Path) -> nn.Module:
    model.load_state_dict(torch.load(train_dir / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def lm_attention_figure(train_dir: Path, tokenize_dir: Path, banks_dir: Path | None, png: Path) -> Path | None:
    """Maps of a trained ska_lm cell for the first validation sequence (held out from training);
    None for a cell without set attention (which has no bank)."""
    from studies.data.lm import chunk_tokens
    from studies.data.tokenizer import load_tokens

    from .model import CausalLM, LMConfig

    config = json.loads((train_dir / "config.json").read_text())
    if config["attention"] != "ska":
        return None
    model = _load(CausalLM(LMConfig(**config)), train_dir)
    inputs, _ = chunk_tokens(load_tokens(tokenize_dir / "val.tokens.pt"), config["seq_len"])
    bank = Bank.load(banks_dir / "val.bank.pt").select(torch.tensor([0])).padded()
    with torch.no_grad(), capture(model) as maps:
        model(inputs[:1], bank)
    return plot_maps(maps, bank.valid, "SKA attention, validation sequence 0", png)


def setrecall_attention_figure(train_dir: Path, data_dir: Path, hash_seed: int | None, png: Path) -> Path | None:
    """Maps of a trained ska_setrecall cell for the first validation sequence, its bank hashed
    with the cell's ``hash_seed`` as in training."""
    from .model import CausalLM, LMConfig
    from .synthetic import lm_data

    c = json.loads((train_dir / "config.json").read_text())
    if c["attention"] != "ska":
        return None
    model = _load(CausalLM(LMConfig(**c)), train_dir)
    tokens = torch.load(data_dir / "val.pt", weights_only=True)[:1]
    data = lm_data(tokens, c["window"], c["stride"], c["minhash_k"], hash_seed, c["vocab_size"], True)
    bank = data.bank.padded()
    with torch.no_grad(), capture(model) as maps:
        model(data.inputs, bank)
    return plot_maps(maps, bank.valid, "SKA attention, validation sequence 0", png)


def vit_attention_figure(train_dir: Path, images_dir: Path, png: Path) -> Path | None:
    """Maps of a trained ska_vit cell for the first validation image (held out from training)."""
    from .vit import ViT, ViTConfig

    model = _load(ViT(ViTConfig(**json.loads((train_dir / "config.json").read_text()))), train_dir)
    image = torch.load(images_dir / "images.pt", weights_only=True)["val_x"][:1]
    bank = model.bank(image).padded()
    with torch.no_grad(), capture(model) as maps:
        model(image, bank)
    return plot_maps(maps, bank.valid, "SKA attention, validation image 0", png)


def diffusion_attention_figure(train_dir: Path, data: Tensor, modality: str, png: Path) -> Path | None:
    """Maps of a trained denoiser (ska_diffusion: ``modality="image"``, uint8 images; ska_text_diffusion:
    ``"text"``, token ids) on the first example of ``data`` (validation), noised half-way: t = T/2,
    ε drawn with seed 0. The sets are those of x_t, the only input the denoiser's bank is built from."""
    from .diffusion import Denoiser, DiffusionConfig, q_sample

    config = json.loads((train_dir / "config.json").read_text())
    model = _load(Denoiser(DiffusionConfig(modality=modality, **config)), train_dir)
    with torch.no_grad(), capture(model) as maps:
        x0 = model.clean(data[:1])
        t = torch.tensor([model.cfg.T // 2])
        x_t = q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), model.alpha_bar)
        model(x_t, t)
    if not maps:
        return None
    return plot_maps(
        maps, model.noisy_bank(x_t).padded().valid, f"SKA attention, validation {modality} 0 at t=T/2", png
    )
