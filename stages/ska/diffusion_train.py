"""train: a DDPM (ε-prediction, cosine schedule) whose denoiser is SKA or SDPA attention.

The SKA bank is built from the noisy input x_t inside the denoiser, never from x_0.
Checkpoint selection reads the val split only: val ε-MSE (5 timesteps, noise seeded by
train_seed) every ``eval_every`` steps and at the end, the lowest kept (``val_history.json``
holds every evaluation). The test split is not read.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.images import load_split
from stages.common.trained import final_loss, save_trained
from stages.ska.ska_keys import INLINE_BANK_KEYS

MODEL_KEYS = (
    "attention",
    "d_model",
    "n_layers",
    "n_heads",
    "patch",
    "T",
    *INLINE_BANK_KEYS,
)
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "train_seed", "eval_every")

SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS,
    needs=("images",),
    code=("studies.ska.diffusion",),
    choices={"attention": ("ska", "sdpa"), "backend": ("python", "keops")},
    types={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "patch", "window", "stride", "minhash_k"), int),
        **dict.fromkeys(("router_topk", "adapter_rank", "hash_seed", "steps", "batch_size", "warmup_steps"), int),
        **dict.fromkeys(("train_seed", "eval_every", "T"), int),
        **dict.fromkeys(("gamma", "lr"), float),
        "beta": (float, None),
    },
    ranges={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "patch", "window", "stride", "minhash_k"), ">= 1"),
        **dict.fromkeys(("steps", "batch_size", "eval_every", "T"), ">= 1"),
        **dict.fromkeys(("router_topk", "adapter_rank", "warmup_steps", "gamma", "beta"), ">= 0"),
        "lr": "> 0",
    },
    checks={
        "d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0,
        "patch divides the 32-pixel image side": lambda patch: 32 % patch == 0,
        "window <= the (32 / patch)^2 patches of an image": lambda window, patch: window <= (32 // patch) ** 2,
    },
    gpus=1,
    applies=dict.fromkeys(INLINE_BANK_KEYS, lambda attention: attention == "ska"),
)


def build_model(config: dict):
    from studies.ska.diffusion import Denoiser, DiffusionConfig

    return Denoiser(DiffusionConfig(modality="image", **config))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.diffusion import train_diffusion
    from studies.ska.vit import fit_seconds

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS if k in p}  # the config's defaults for keys an SDPA cell lacks
    torch.manual_seed(p["train_seed"])
    model = build_model(config).to(ctx.device)
    images = ctx.input("images")
    result = train_diffusion(
        model,
        load_split(images, "train")[0],
        load_split(images, "val")[0],
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        warmup_steps=p["warmup_steps"],
        eval_every=p["eval_every"],
        seed=p["train_seed"],
    )
    save_trained(ctx.out, model, config, result.history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(result.history["train"]),
        **fit_seconds(result),
        "best_step": result.best["step"],  # still improving when it is the last step
        "steps": p["steps"],
        "best_val_eps_mse": result.best["eps_mse"],
        "final_val_eps_mse": result.final["eps_mse"],
        "restored_best": result.restored,
    }
