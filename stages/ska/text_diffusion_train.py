"""train: a text DDPM (ε-prediction, cosine schedule) denoising token embeddings, SKA or SDPA.

x_0 = E[ids] for windows of seq_len tokens of the train split, E the frozen seeded table of
``studies.ska.diffusion``. The SKA bank is built inside the denoiser from the rounded ids of
the noisy x_t, never from x_0 or the clean tokens.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained

MODEL_KEYS = (
    "attention",
    "d_model",
    "n_layers",
    "n_heads",
    "seq_len",
    "d_embed",
    "embed_seed",
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
    needs=("tokenize",),
    code=("studies.ska.diffusion", "studies.data.lm", "studies.data.tokenizer"),
    choices={"attention": ("ska", "sdpa"), "backend": ("python", "keops")},
)


def token_sequences(ctx: Context, split: str, seq_len: int):
    """Non-overlapping windows [N, seq_len] of the split's token stream (as ska_lm's inputs)."""
    from studies.data.lm import chunk_tokens
    from studies.data.tokenizer import load_tokens

    return chunk_tokens(load_tokens(ctx.input("tokenize") / f"{split}.tokens.pt"), seq_len)[0]


def build_model(config: dict):
    from studies.ska.diffusion import Denoiser, DiffusionConfig

    return Denoiser(DiffusionConfig(modality="text", **config))


def run(ctx: Context) -> dict:
    import torch

    from studies.data.tokenizer import load_tokenizer, vocab_size
    from studies.ska.diffusion import train_diffusion

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    config = {k: p[k] for k in MODEL_KEYS}
    config["vocab_size"] = vocab_size(load_tokenizer(ctx.input("tokenize") / "tokenizer.json"))
    torch.manual_seed(p["train_seed"])
    model = build_model(config)
    data = token_sequences(ctx, "train", p["seq_len"])
    history = train_diffusion(
        model,
        data,
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        warmup_steps=p["warmup_steps"],
        seed=p["train_seed"],
    ).history["train"]  # no val here: the loop keeps the last state
    save_trained(ctx.out, model, config, history)
    return {
        "n_params": model.n_params(),
        "train_sequences": len(data),
        "train_loss": final_loss(history),
        "train_s": history[-1]["time_s"],
    }
