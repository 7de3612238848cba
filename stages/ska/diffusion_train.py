"""train: a DDPM (ε-prediction, cosine schedule) whose denoiser is SKA or SDPA attention.

The SKA bank is built from the noisy input x_t inside the denoiser, never from x_0.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained

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
    save_trained(ctx.out, model, config, history)
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(history),
        "train_s": history[-1]["time_s"],
    }
