"""train: one energy-based Sudoku solver per cell (studies/ebm), the kept state the best on the
VALIDATION split decoded in a solver mode (`select_mode`: z_zero | langevin), never the oracle."""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.common.trained import save_trained

MODEL_KEYS = ("cell_context", "z_norm", "z_noise", "target_proj", "pos_std")
LOSS_KEYS = ("constraint_weight",)
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
    "select_mode",
    "precision",
)

SPEC = StageSpec(
    name="train",
    reads=("model_size", *MODEL_KEYS, *LOSS_KEYS, *TRAIN_KEYS),
    needs=("sudoku_data",),
    code=("studies.ebm.train", "studies.ebm.checks"),
    choices={
        "model_size": ("cpu_small", "paper_7m", "paper_36m"),
        "target_proj": ("ema", "frozen"),
        "select_mode": ("z_zero", "langevin"),  # solver modes only: oracle_z is refused here
        "precision": ("fp32", "bf16"),
    },
    types={
        **dict.fromkeys(("steps", "batch_size", "eval_every", "train_seed"), int),
        **dict.fromkeys(("z_noise", "pos_std", "constraint_weight", "weight_decay", "warmup_frac"), float),
        **dict.fromkeys(("lr", "grad_clip"), float),
        **dict.fromkeys(("cell_context", "z_norm", "augment"), bool),
    },
    ranges={
        **dict.fromkeys(("steps", "batch_size", "eval_every"), ">= 1"),
        **dict.fromkeys(("z_noise", "pos_std", "constraint_weight", "weight_decay"), ">= 0"),
        **dict.fromkeys(("lr", "grad_clip"), "> 0"),
        "warmup_frac": "[0, 1)",
    },
    metrics=("val_blank_acc", "val_puzzle_acc"),
    gpus=1,
)


def load_split(ctx: Context, name: str) -> dict:
    """One split of the sudoku_data stage as numpy arrays (puzzles, solutions, ...)."""
    import numpy as np

    with np.load(ctx.input("sudoku_data") / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def build_model(config: dict):
    """The model a saved config.json describes (the train → langevin/evaluate hand-over)."""
    from studies.ebm.model import EBMConfig, EBMSudoku

    return EBMSudoku(EBMConfig(**config["model"]))


def run(ctx: Context) -> dict:
    from dataclasses import asdict

    import torch

    from studies import train_loop
    from studies.ebm.checks import check_unique
    from studies.ebm.loss import LossWeights
    from studies.ebm.model import config, n_trainable
    from studies.ebm.train import EvalConfig, train_cell

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    model_cfg = config(p["model_size"], **{k: p[k] for k in MODEL_KEYS})
    loop = train_loop.LoopConfig(
        steps=p["steps"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
        grad_clip=p["grad_clip"],
        warmup_frac=p["warmup_frac"],
        eval_every=p["eval_every"],
        target=("val_puzzle_acc", "val_blank_acc"),
        seed=p["train_seed"],
    )
    val = load_split(ctx, "val")
    check_unique(val["puzzles"], "sudoku_data val split")  # selection scores boards against one stored solution
    model, result = train_cell(
        load_split(ctx, "train"),
        val,
        model_cfg,
        loop,
        weights=LossWeights(constraint_weight=p["constraint_weight"]),
        ecfg=EvalConfig(mode=p["select_mode"]),
        augment=p["augment"],
        device=ctx.device,
        precision=p["precision"],
    )
    save_trained(ctx.out, model, {"model": asdict(model_cfg)}, result.history["train"])
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    best = result.best or {}
    return {
        "n_params": n_trainable(model),
        "steps": p["steps"],
        "best_step": best.get("step"),
        **{k: v for k, v in best.items() if k.startswith("val_") and k not in ("val_chance", "val_n")},
        "train_wall_s": result.wall_s,
    }
