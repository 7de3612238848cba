"""train: a text DDPM (ε-prediction, cosine schedule) denoising token embeddings, SKA or SDPA.

x_0 = E[ids] for windows of seq_len tokens of the train split, E the frozen seeded table of
``studies.ska.diffusion``. The SKA bank is built inside the denoiser from the rounded ids of
the noisy x_t, never from x_0 or the clean tokens. The kept state is the one of least ε-MSE
on ``val_seqs`` validation windows, evaluated every ``eval_every`` steps and at the last.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained
from stages.ska.ska_keys import INLINE_BANK_KEYS

MODEL_KEYS = (
    "attention",
    "d_model",
    "n_layers",
    "n_heads",
    "seq_len",
    "d_embed",
    "embed_seed",
    "T",
    *INLINE_BANK_KEYS,
)
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "train_seed", "eval_every", "val_seqs", "eval_seed")

SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS,
    needs=("tokenize",),
    code=("studies.ska.diffusion", "studies.ska.text_diffusion", "studies.data.lm", "studies.data.tokenizer"),
    choices={"attention": ("ska", "sdpa"), "backend": ("python", "keops")},
    types={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "seq_len", "d_embed", "embed_seed", "T", "window"), int),
        **dict.fromkeys(("stride", "minhash_k", "router_topk", "adapter_rank", "hash_seed", "steps"), int),
        **dict.fromkeys(("batch_size", "warmup_steps", "train_seed", "eval_every", "val_seqs", "eval_seed"), int),
        **dict.fromkeys(("gamma", "lr"), float),
        "beta": (float, None),
    },
    ranges={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "seq_len", "d_embed", "T", "window", "stride"), ">= 1"),
        **dict.fromkeys(("minhash_k", "steps", "batch_size", "eval_every", "val_seqs"), ">= 1"),
        **dict.fromkeys(("router_topk", "adapter_rank", "warmup_steps", "gamma", "beta"), ">= 0"),
        "lr": "> 0",
    },
    checks={
        "d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0,
        "window <= seq_len (a set is a window of one sequence)": lambda window, seq_len: window <= seq_len,
    },
    gpus=1,
    applies=dict.fromkeys(INLINE_BANK_KEYS, lambda attention: attention == "ska"),
)


def token_sequences(ctx: Context, split: str, seq_len: int, n: int = 0):
    """Non-overlapping windows [N, seq_len] of the split's token stream (as ska_lm's inputs);
    with ``n`` > 0, only ``n`` of them evenly spaced over the split."""
    import torch

    from studies.data.lm import chunk_tokens
    from studies.data.tokenizer import load_tokens

    seqs = chunk_tokens(load_tokens(ctx.input("tokenize") / f"{split}.tokens.pt"), seq_len)[0]
    if 0 < n < len(seqs):
        seqs = seqs[torch.linspace(0, len(seqs) - 1, n).round().long()]
    return seqs


def build_model(config: dict):
    from studies.ska.diffusion import Denoiser, DiffusionConfig

    return Denoiser(DiffusionConfig(modality="text", **config))


def run(ctx: Context) -> dict:
    import torch

    from studies.data.tokenizer import load_tokenizer, vocab_size
    from studies.ska.text_diffusion import train_denoiser
    from studies.train_loop import loop_config

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS if k in p}  # the config's defaults for keys an SDPA cell lacks
    config["vocab_size"] = vocab_size(load_tokenizer(ctx.input("tokenize") / "tokenizer.json"))
    torch.manual_seed(p["train_seed"])
    model = build_model(config).to(ctx.device)
    data = token_sequences(ctx, "train", p["seq_len"])
    val = token_sequences(ctx, "val", p["seq_len"], p["val_seqs"])
    cfg = loop_config(
        steps=p["steps"],
        warmup_steps=p["warmup_steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        weight_decay=0.0,
        grad_clip=1.0,
        eval_every=p["eval_every"],
        seed=p["train_seed"],
    )
    result = train_denoiser(model, data, cfg, val, eval_seed=p["eval_seed"])
    save_trained(ctx.out, model, config, result.history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    return {
        "n_params": model.n_params(),
        "train_sequences": len(data),
        "train_loss": final_loss(result.history["train"]),
        "train_s": result.history["train"][-1]["time_s"],
        "val_eps_mse": result.best["val_eps_mse"],  # of the kept state, on the val_seqs sample
        "best_step": result.best["step"],  # still improving when it is the last step
        "steps": p["steps"],
        "val_sequences": len(val),
    }
