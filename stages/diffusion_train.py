"""train: a DDPM (ε-prediction, cosine schedule) whose denoiser is SKA or SDPA attention.

The SKA bank is built from the noisy input x_t inside the denoiser, never from x_0.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec

MODEL_KEYS = (
    "attention",
    "d_model",
    "n_layers",
    "n_heads",
    "patch",
    "T",
    "window",
    "stride",
    "minhash_k",
    "router_topk",
    "adapter_rank",
    "score_mode",
    "gamma",
    "beta",
    "hash_seed",
    "backend",
)
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "train_seed")

SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS,
    needs=("images",),
    code=("studies.ska.diffusion",),
    choices={"attention": ("ska", "sdpa"), "backend": ("python", "keops")},
)


def build_model(config: dict):
    from studies.ska.diffusion import Denoiser, DiffusionConfig

    return Denoiser(DiffusionConfig(modality="image", **config))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.diffusion import train_diffusion

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS}
    torch.manual_seed(p["train_seed"])
    model = build_model(config)
    x = torch.load(ctx.input("images") / "images.pt", weights_only=True)["train_x"]
    history = train_diffusion(
        model,
        x,
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        warmup_steps=p["warmup_steps"],
        seed=p["train_seed"],
    )
    torch.save(model.state_dict(), ctx.out / "model.pt")
    (ctx.out / "config.json").write_text(json.dumps(config, indent=1))
    (ctx.out / "history.json").write_text(json.dumps(history))
    tail = history[-max(1, len(history) // 10) :]
    return {
        "n_params": model.n_params(),
        "train_loss": sum(h["loss"] for h in tail) / len(tail),
        "train_s": history[-1]["time_s"],
    }
