"""train: a tiny ViT per cell, SKA over patch banks or the SDPA baseline.

The SKA bank of each batch is built from that batch's images inside the model (one atom
per patch: position and a brightness bit); it is cheap, so it is not cached. Checkpoint
selection reads the val split only: val top-1 every ``eval_every`` steps and at the end, the
best state kept (``val_history.json`` holds every evaluation). The test split is not read.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.images import load_split
from stages.common.trained import final_loss, save_trained
from stages.ska.ska_keys import INLINE_BANK_KEYS

MODEL_KEYS = (
    "attention",
    "mixer",
    "d_model",
    "n_layers",
    "n_heads",
    "patch",
    "pool",
    *INLINE_BANK_KEYS,
)
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "train_seed")
SELECT_KEYS = ("eval_every", "eval_batch_size")  # val top-1 for checkpoint selection

SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS + SELECT_KEYS,
    needs=("images",),
    code=("studies.ska.vit",),
    choices={
        "attention": ("ska", "sdpa"),
        "mixer": ("auto", "conv", "none"),
        "pool": ("mean", "cls"),
        "backend": ("python", "keops"),
    },
    types={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "patch", "window", "stride", "minhash_k"), int),
        **dict.fromkeys(("router_topk", "adapter_rank", "hash_seed", "steps", "batch_size", "warmup_steps"), int),
        **dict.fromkeys(("train_seed", "eval_every", "eval_batch_size"), int),
        **dict.fromkeys(("gamma", "lr", "weight_decay"), float),
        "beta": (float, None),
    },
    ranges={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "patch", "window", "stride", "minhash_k"), ">= 1"),
        **dict.fromkeys(("steps", "batch_size", "eval_every", "eval_batch_size"), ">= 1"),
        **dict.fromkeys(("router_topk", "adapter_rank", "warmup_steps", "gamma", "beta", "weight_decay"), ">= 0"),
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
    from studies.ska.vit import ViT, ViTConfig

    return ViT(ViTConfig(**config))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.vit import fit_seconds, train_classifier

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS if k in p}  # the config's defaults for keys an SDPA cell lacks
    torch.manual_seed(p["train_seed"])  # initial weights
    model = build_model(config).to(ctx.device)
    x, y = load_split(ctx.input("images"), "train")
    result = train_classifier(
        model,
        x,
        y,
        load_split(ctx.input("images"), "val"),
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        warmup_steps=p["warmup_steps"],
        weight_decay=p["weight_decay"],
        eval_every=p["eval_every"],
        eval_batch_size=p["eval_batch_size"],
        seed=p["train_seed"],
    )
    save_trained(ctx.out, model, config, result.history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    seconds = fit_seconds(result)
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(result.history["train"]),
        **seconds,
        "train_imgs_per_s": p["steps"] * p["batch_size"] / seconds["train_s"],
        "best_step": result.best["step"],  # still improving when it is the last step
        "steps": p["steps"],
        "best_val_top1": result.best["top1"],
        "final_val_top1": result.final["top1"],
        "restored_best": result.restored,
        "n_val": result.best["n"],
    }
