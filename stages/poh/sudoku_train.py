"""train: one PoH-HRM (or transformer baseline) Sudoku solver per cell, best state on val."""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.trained import save_trained

HRM_KEYS = (
    "d_model",
    "n_heads",
    "d_ff",
    "H_layers",
    "L_layers",
    "H_cycles",
    "L_cycles",
    "T",
    "temperature",
    "routing_point",
    "injection",
    "memory_size",
    "alpha_agg",
    "use_learned_gate",
    "entropy_norm",
    "halt_max_steps",
)
BASELINE_KEYS = ("d_model", "n_heads", "d_ff")
TRAIN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "grad_clip",
    "warmup_frac",
    "eval_every",
    "train_seed",
    "augment",
    "entropy_weight",
)


def alpha_gated(injection: str) -> bool:
    return injection == "alpha_gated"


SPEC = StageSpec(
    name="train",
    reads=("model_kind", "baseline_layers", *HRM_KEYS, *TRAIN_KEYS),
    needs=("sudoku_data",),
    code=("studies.poh.sudoku_task",),
    choices={
        "model_kind": ("hrm", "baseline"),
        "routing_point": ("pre_proj", "post_proj"),
        "injection": ("none", "broadcast", "film", "depth_token", "cross_attn", "alpha_gated"),
        "alpha_agg": ("mean", "max", "entropy"),
        "entropy_norm": ("log", "n_heads"),
    },
    types={
        **dict.fromkeys(("baseline_layers", "d_model", "n_heads", "d_ff", "H_layers", "L_layers", "H_cycles"), int),
        **dict.fromkeys(("L_cycles", "T", "memory_size", "halt_max_steps", "steps", "batch_size", "eval_every"), int),
        **dict.fromkeys(("temperature", "lr", "weight_decay", "grad_clip", "warmup_frac", "entropy_weight"), float),
        **dict.fromkeys(("use_learned_gate", "augment"), bool),
        "train_seed": int,
    },
    ranges={
        **dict.fromkeys(("baseline_layers", "d_model", "n_heads", "d_ff", "H_layers", "L_layers", "H_cycles"), ">= 1"),
        **dict.fromkeys(
            ("L_cycles", "T", "memory_size", "halt_max_steps", "steps", "batch_size", "eval_every"), ">= 1"
        ),
        **dict.fromkeys(("temperature", "lr"), "> 0"),
        **dict.fromkeys(("weight_decay", "grad_clip", "entropy_weight"), ">= 0"),
        "warmup_frac": "[0, 1)",
    },
    checks={"d_model is a multiple of n_heads": lambda n_heads, d_model: d_model % n_heads == 0},
    gpus=1,
    # an injection mode's own keys, and the baseline's depth: absent from the other cells' params
    applies={
        "memory_size": lambda injection: injection == "cross_attn",
        **dict.fromkeys(("alpha_agg", "use_learned_gate", "entropy_norm"), alpha_gated),
        "baseline_layers": lambda model_kind: model_kind == "baseline",
    },
)


def load_split(ctx: Context, name: str) -> dict:
    import numpy as np

    with np.load(ctx.input("sudoku_data") / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def model_config(p) -> dict:
    if p["model_kind"] == "baseline":
        return {"kind": "baseline", **{k: p[k] for k in BASELINE_KEYS}, "n_layers": p["baseline_layers"]}
    return {"kind": "hrm", **{k: p[k] for k in HRM_KEYS if k in p}}  # HRMConfig's defaults for unused keys


def run(ctx: Context) -> dict:
    import torch

    from studies.poh.sudoku_task import run_sudoku_cell

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    train = {k: p[k] for k in TRAIN_KEYS if k != "train_seed"} | {"seed": p["train_seed"]}
    cfg = {"model": model_config(p), "train": train}
    model, history, metrics = run_sudoku_cell(cfg, load_split(ctx, "train"), load_split(ctx, "val"), device=ctx.device)
    save_trained(ctx.out, model, cfg["model"], history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(history["eval"]))
    return metrics | {"note": cell_note(p)}


def cell_note(p) -> str:
    """What a cell's label does not say: α-gated injection with ``mean`` aggregation averages
    routing weights that always sum to 1 over H heads, so it is a fixed 1/H broadcast."""
    if p["model_kind"] == "hrm" and p["injection"] == "alpha_gated" and p["alpha_agg"] == "mean":
        return "alpha mean = fixed 1/H broadcast"
    return ""
