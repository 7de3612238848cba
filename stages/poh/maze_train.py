"""train: a maze path model per (size, kind); PoH uses the width the parity stage chose."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import save_trained

TRAIN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "grad_clip",
    "warmup_frac",
    "eval_every",
    "train_seed",
    "label_smoothing",
    "horizon_mask",
    "entropy_weight",
    "entropy_anneal",
)

SPEC = StageSpec(
    name="train",
    reads=("kind", "size", "d_model", "n_heads", "d_ff", "depth", "R", "T", "horizons", "use_cnn", *TRAIN_KEYS),
    needs=("maze_data", "parity"),
    code=("studies.poh.maze_task",),
    choices={"kind": ("baseline", "poh"), "horizon_mask": ("distance", "none")},
    types={
        **dict.fromkeys(("d_model", "n_heads", "d_ff", "depth", "R", "T", "horizons", "steps", "batch_size"), int),
        **dict.fromkeys(("eval_every", "train_seed"), int),
        **dict.fromkeys(("lr", "weight_decay", "grad_clip", "warmup_frac", "label_smoothing", "entropy_weight"), float),
        **dict.fromkeys(("use_cnn", "entropy_anneal"), bool),
        "size": str,
    },
    ranges={
        **dict.fromkeys(("d_model", "n_heads", "d_ff", "depth", "R", "T", "horizons", "steps", "batch_size"), ">= 1"),
        **dict.fromkeys(("eval_every",), ">= 1"),
        **dict.fromkeys(("weight_decay", "grad_clip", "entropy_weight"), ">= 0"),
        "lr": "> 0",
        "warmup_frac": "[0, 1)",
        "label_smoothing": "[0, 1)",
    },
    checks={"d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0},
    gpus=1,
)


def load_split(ctx: Context, name: str) -> dict:
    import numpy as np

    with np.load(ctx.input("maze_data") / f"{name}.npz") as f:
        return {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}


def model_config(ctx: Context) -> dict:
    p = ctx.params
    cfg = {
        "kind": p["kind"],
        **{k: p[k] for k in ("d_model", "n_heads", "d_ff", "depth", "R", "T", "horizons", "use_cnn")},
    }
    if p["kind"] == "poh":
        parity = next(u for u in ctx.upstream if u.stage == "parity").metrics()
        cfg |= {"d_model": parity["poh_d_model"], "d_ff": parity["poh_d_ff"]}
    return cfg


def run(ctx: Context) -> dict:
    import torch

    from studies.poh.maze_task import run_maze_cell

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    cfg = {
        "model": model_config(ctx),
        "train": {k: p[k] for k in TRAIN_KEYS if k != "train_seed"} | {"seed": p["train_seed"]},
    }
    model, history, metrics = run_maze_cell(cfg, load_split(ctx, "train"), load_split(ctx, "val"), device=ctx.device)
    save_trained(ctx.out, model, cfg["model"], history["train"])
    return metrics | {"size": p["size"]}
