"""train: a tiny ViT per cell, SKA over patch banks or the SDPA baseline.

The SKA bank of each batch is built from that batch's images inside the model (one atom
per patch: position and a brightness bit); it is cheap, so it is not cached.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained

MODEL_KEYS = (
    "attention",
    "mixer",
    "d_model",
    "n_layers",
    "n_heads",
    "patch",
    "pool",
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
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "train_seed")

SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS,
    needs=("images",),
    code=("studies.ska.vit",),
    choices={
        "attention": ("ska", "sdpa"),
        "mixer": ("auto", "conv", "none"),
        "pool": ("mean", "cls"),
        "backend": ("python", "keops"),
    },
)


def load_images(ctx: Context, split: str):
    import torch

    data = torch.load(ctx.input("images") / "images.pt", weights_only=True)
    return data[f"{split}_x"], data[f"{split}_y"]


def build_model(config: dict):
    from studies.ska.vit import ViT, ViTConfig

    return ViT(ViTConfig(**config))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.vit import train_classifier

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS}
    torch.manual_seed(p["train_seed"])  # initial weights
    model = build_model(config)
    x, y = load_images(ctx, "train")
    history = train_classifier(
        model,
        x,
        y,
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        warmup_steps=p["warmup_steps"],
        weight_decay=p["weight_decay"],
        seed=p["train_seed"],
    )
    save_trained(ctx.out, model, config, history)
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(history),
        "train_s": history[-1]["time_s"],
        "train_imgs_per_s": p["steps"] * p["batch_size"] / history[-1]["time_s"],
    }
