"""train: one causal LM per cell, SKA or an SDPA control, on the shared token/bank caches.

The kept state is the one of least loss on ``val_seqs`` validation sequences, evaluated every
``eval_every`` steps and at the last (test is never read here).
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained
from stages.ska.ska_keys import SET_KEYS

# What only set attention uses: the shared set keys and the LM kernel's own. An SDPA (or
# attention-free) cell leaves them out of its params, so editing one retrains no such cell.
# ``window`` is not among them: it is also the causal conv's width (studies.ska.model).
SKA_KEYS = (*SET_KEYS, "tau", "eta", "gate_init", "backend", "precision")

MODEL_KEYS = (
    "seq_len",
    "d_model",
    "n_layers",
    "n_heads",
    "d_ff",
    "dropout",
    "attention",
    "mixer",
    "window",
    *SKA_KEYS,
)
TRAIN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "train_seed",
    "eval_every",
    "val_seqs",
)


def uses_ska(attention: str) -> bool:
    return attention == "ska"


def uses_window(attention: str, mixer: str) -> bool:
    """SKA's set width, or the causal conv's: LMConfig.local_mixer puts the conv in 'auto' SKA and none blocks."""
    return attention == "ska" or mixer == "conv" or (mixer == "auto" and attention == "none")


SPEC = StageSpec(
    name="train",
    reads=MODEL_KEYS + TRAIN_KEYS,
    needs=("tokenize", "banks"),
    code=("studies.ska.model", "studies.ska.train", "studies.data.lm"),
    choices={
        "attention": ("ska", "sdpa", "none"),
        "mixer": ("auto", "conv", "none"),
        "score_mode": ("delta_rbf", "delta_plus_dot", "intersect_norm", "intersect_plus_dot", "dot"),
        "backend": ("python", "keops", "triton"),
        "precision": ("fp32", "fp16", "bf16"),
    },
    types={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "router_topk", "adapter_rank", "steps", "batch_size"), int),
        **dict.fromkeys(("warmup_steps", "train_seed", "eval_every", "val_seqs", "window", "stride", "minhash_k"), int),
        **dict.fromkeys(("dropout", "gamma", "tau", "eta", "gate_init", "lr", "weight_decay", "grad_clip"), float),
        "seq_len": int,
        "d_ff": (int, None),
        "beta": (float, None),
    },
    ranges={
        **dict.fromkeys(("d_model", "n_layers", "n_heads", "d_ff", "steps", "batch_size", "eval_every"), ">= 1"),
        **dict.fromkeys(("window", "stride", "minhash_k", "val_seqs"), ">= 1"),
        **dict.fromkeys(("router_topk", "adapter_rank", "warmup_steps", "gamma", "beta", "weight_decay"), ">= 0"),
        **dict.fromkeys(("lr", "tau", "grad_clip"), "> 0"),
        "dropout": "[0, 1)",
    },
    checks={"d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0},
    metrics=("val_loss", "train_loss", "train_s", "n_params"),
    threads=1,  # small models: two cells in parallel beat one cell on two threads
    gpus=1,
    applies={**dict.fromkeys(SKA_KEYS, uses_ska), "window": uses_window},
    needs_on={"banks": uses_ska},
)


def lm_data(ctx: Context, split: str, seq_len: int, with_bank: bool):
    """The split's examples, with the bank built over exactly these inputs when SKA needs it."""
    from studies.data.lm import chunk_tokens
    from studies.data.tokenizer import load_tokens
    from studies.ska.banks import Bank
    from studies.ska.train import LMData

    inputs, targets = chunk_tokens(load_tokens(ctx.input("tokenize") / f"{split}.tokens.pt"), seq_len)
    bank = Bank.load(ctx.input("banks") / f"{split}.bank.pt") if with_bank else None
    return LMData(inputs, targets, bank)


def build_model(ctx: Context, config: dict | None = None):
    """The cell's model: config from params (LMConfig's defaults for the keys its variant does not
    use, which its params lack) plus the tokenizer's vocabulary size."""
    from studies.data.tokenizer import load_tokenizer, vocab_size
    from studies.ska.model import CausalLM, LMConfig

    if config is None:
        config = {k: ctx.params[k] for k in MODEL_KEYS if k in ctx.params}
        config["vocab_size"] = vocab_size(load_tokenizer(ctx.input("tokenize") / "tokenizer.json"))
    return CausalLM(LMConfig(**config)), config


def loop_of(p: dict):
    """The training loop's settings from a cell's TRAIN_KEYS (ska_lm's and ska_setrecall's train)."""
    from studies.train_loop import loop_config

    return loop_config(
        steps=p["steps"],
        warmup_steps=p["warmup_steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
        grad_clip=p["grad_clip"],
        eval_every=p["eval_every"],
        seed=p["train_seed"],
    )


def memory_shape(p):
    """The cell's shape for studies.ska.memory (used by `ablate memory-safe` and the guard)."""
    from studies.ska.memory import Shape

    return Shape(
        batch=p["batch_size"],
        seq_len=p["seq_len"],
        d_model=p["d_model"],
        n_layers=p["n_layers"],
        vocab=p["vocab_size"] if "vocab_size" in p else 0,
        window=p["window"],
        stride=p["stride"],
        minhash_k=p["minhash_k"],
        router_topk=p["router_topk"],
        backend=p["backend"],
    )


def memory_guard(ctx: Context, vocab: int) -> None:
    """With ABLATE_MEMORY_SAFE=1, refuse a cell whose estimated peak does not fit (status: oom).

    An environment switch, not a param: it can refuse a build but never change an artifact.
    """
    import os
    from dataclasses import replace

    from studies.ska.memory import MARGIN, available_bytes, estimate

    if os.environ.get("ABLATE_MEMORY_SAFE") != "1" or ctx.params["attention"] != "ska":
        return
    need = sum(estimate(replace(memory_shape(ctx.params), vocab=vocab)).values())
    free, where = available_bytes()
    if need > free * (1 - MARGIN):
        raise MemoryError(
            f"memory-safe: estimated peak {need / 2**30:.2f} GiB exceeds {where} "
            f"{free / 2**30:.2f} GiB less a {MARGIN:.0%} margin; see `ablate memory-safe {ctx.study}`"
        )


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.train import train_lm

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    torch.manual_seed(p["train_seed"])  # initial weights
    model, config = build_model(ctx)
    model.to(ctx.device)
    memory_guard(ctx, config["vocab_size"])
    ska = p["attention"] == "ska"
    cfg = loop_of(p)
    val = lm_data(ctx, "val", p["seq_len"], ska).spaced(p["val_seqs"])
    result = train_lm(model, lm_data(ctx, "train", p["seq_len"], ska), cfg, val)
    save_trained(ctx.out, model, config, result.history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    seconds = result.history["train"][-1]["time_s"]
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(result.history["train"]),
        "train_tokens_per_s": p["steps"] * p["batch_size"] * p["seq_len"] / seconds,
        "train_s": seconds,
        "val_loss": result.best["val_loss"],  # of the kept state, on the val_seqs sample
        "best_step": result.best["step"],  # still improving when it is the last step
        "steps": p["steps"],
        "val_sequences": len(val),
    }
