"""Training and evaluation of the Sudoku solvers (PoH-HRM and the transformer baseline).

Data are the arrays of ``studies.data.sudoku`` (``puzzles`` uint8 [N, 81], 0 = blank;
``solutions`` uint8 [N, 81], digits 1–9), from the generator or a CSV.
- Training batches get a fresh random symmetry per example and per draw (digit relabelling,
  transpose, band/row/stack/column orders), the same one on puzzle and solution; eval splits
  are never augmented.
- Loss: cross-entropy on blank cells only. With ACT (halt_max_steps K > 1) the CE is averaged
  over the K outer steps (HRM deep supervision) and the Q head is trained with
  ``act_q_loss`` on "every blank right at that step" (the source never trained it). An
  optional routing-entropy term λ·mean H(α) (λ annealed linearly to 0 if asked) is added.
- Evaluation feeds the model the puzzle only (blanks = 0); the solution is used afterwards to
  score. Predictions are the argmax over digits 1–9 (class 0, blank, is never an answer).
Metrics and their convention (``blank_cells``) are in ``studies.poh.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studies.data import sudoku
from studies.poh.baseline import SudokuBaseline, SudokuBaselineConfig
from studies.poh.config import HRMConfig
from studies.poh.hrm import HybridHRM, act_q_loss
from studies.poh.metrics import sudoku_metrics
from studies.train_loop import LoopConfig, anneal_linear, config_dict, split_config, train

MODEL_KINDS = ("hrm", "baseline")


@dataclass(frozen=True)
class SudokuTaskConfig:
    augment: bool = True
    entropy_weight: float = 0.0  # λ of the routing-entropy term; 0 = off
    entropy_anneal: bool = False  # λ linearly to 0 over training
    q_loss_weight: float = 1.0  # weight of the ACT Q loss (used only when K > 1)
    eval_batch_size: int = 256


def as_tensors(data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(puzzles, solutions) uint8 tensors [N, 81] from the data arrays, validated."""
    p, s = np.asarray(data["puzzles"]), np.asarray(data["solutions"])
    if p.shape != s.shape or p.ndim != 2 or p.shape[1] != 81:
        raise ValueError(f"puzzles {p.shape} and solutions {s.shape} must both be [N, 81]")
    return torch.from_numpy(p.astype(np.uint8)), torch.from_numpy(s.astype(np.uint8))


def make_batch(puzzles: torch.Tensor, solutions: torch.Tensor, idx, rng, augment: bool):
    """Rows ``idx`` as long tensors (inputs, targets); with ``augment`` one fresh symmetry per
    row drawn from ``rng``, applied identically to puzzle and solution."""
    x, y = puzzles[idx], solutions[idx]
    if augment:
        x, y = sudoku.augment(x, y, rng)
    return x.long(), y.long()


def blank_ce(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CE over blank cells; logits [..., B, 81, C] (leading step dims are averaged)."""
    blank = (x == 0).expand(logits.shape[:-1])
    return F.cross_entropy(logits[blank], y.expand(logits.shape[:-1])[blank])


def sudoku_loss(model: nn.Module, batch, step: int, steps: int, task: SudokuTaskConfig):
    """(loss, logs) of one batch: blank-cell CE, + Q loss (ACT), + λ·entropy (optional)."""
    x, y = batch
    out = model(x)
    if out.step_logits is None:
        ce = blank_ce(out.logits, x, y)
    else:
        ce = blank_ce(out.step_logits, x, y)  # [K, B, 81, C]: every outer step supervised
    loss, logs = ce, {"ce": ce.item()}
    if out.q_halt is not None:
        with torch.no_grad():
            pred = out.step_logits[..., 1:].argmax(-1) + 1  # [K, B, 81]
            solved = ((pred == y) | (x != 0)).all(-1)  # [K, B]
        q = act_q_loss(out.q_halt, out.q_continue, solved, out.target_q_continue)
        loss = loss + task.q_loss_weight * q
        logs["q_loss"] = q.item()
    if task.entropy_weight > 0 and out.entropy is not None:
        lam = anneal_linear(task.entropy_weight, step, steps) if task.entropy_anneal else task.entropy_weight
        ent = out.entropy.mean()
        loss = loss + lam * ent
        logs.update(route_entropy=ent.item(), entropy_weight=lam)
    return loss, logs


@torch.no_grad()
def predict_sudoku(model: nn.Module, puzzles, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(digits uint8 [N, 81], logits float32 [N, 81, C]); the model sees only the puzzles (on
    its device)."""
    device, was = next(model.parameters()).device, model.training
    model.eval()
    preds, logits = [], []
    puzzles = torch.as_tensor(np.asarray(puzzles)).long()
    for lo in range(0, len(puzzles), batch_size):
        out = model(puzzles[lo : lo + batch_size].to(device))
        logits.append(out.logits.float().cpu())
        preds.append((out.logits[..., 1:].argmax(-1) + 1).cpu())  # digits 1..9 only
    model.train(was)
    if not logits:
        return np.zeros((0, 81), np.uint8), np.zeros((0, 81, 10), np.float32)
    return torch.cat(preds).numpy().astype(np.uint8), torch.cat(logits).numpy()


def evaluate_sudoku(model: nn.Module, data: dict, batch_size: int = 256) -> dict:
    """Blank-cell metrics (``studies.poh.metrics.sudoku_metrics``) and ``loss`` (mean CE on
    blank cells) on ``data``; never augmented, and the model is given the puzzles only."""
    puzzles, solutions = as_tensors(data)
    preds, logits = predict_sudoku(model, puzzles, batch_size)
    metrics = sudoku_metrics(preds, puzzles, solutions)
    blank = puzzles.numpy() == 0
    if blank.any():
        lg = torch.from_numpy(logits[blank])
        metrics["loss"] = float(F.cross_entropy(lg, torch.from_numpy(solutions.numpy()[blank]).long()))
    return metrics


def build_sudoku_model(model_cfg: dict) -> nn.Module:
    """``{"kind": "hrm" | "baseline", **fields}`` → HybridHRM(HRMConfig) or SudokuBaseline."""
    cfg = dict(model_cfg)
    kind = cfg.pop("kind", None)
    if kind not in MODEL_KINDS:
        raise ValueError(f"model.kind={kind!r} is not one of {MODEL_KINDS}")
    if kind == "hrm":
        return HybridHRM(HRMConfig(**cfg))
    return SudokuBaseline(SudokuBaselineConfig(**cfg))


def check_disjoint(**splits: dict) -> None:
    """Raise if any puzzle appears in two of the named splits (exact 81-cell match)."""
    seen: dict[bytes, str] = {}
    for name, data in splits.items():
        for row in np.ascontiguousarray(np.asarray(data["puzzles"], dtype=np.uint8)):
            other = seen.setdefault(row.tobytes(), name)
            if other != name:
                raise ValueError(f"a puzzle is in both the {other!r} and {name!r} splits")


def three_way_split(data: dict, n_val: int, n_test: int, seed: int) -> tuple[dict, dict, dict]:
    """Seeded (train, val, test) of one generated set; duplicates dropped, no puzzle shared."""
    n = len(np.unique(np.asarray(data["puzzles"], dtype=np.uint8), axis=0))
    if n_val + n_test >= n:
        raise ValueError(f"n_val={n_val} + n_test={n_test} leaves no training puzzle of {n} distinct")
    rest, test = sudoku.split(data, val_frac=n_test / n, seed=seed)
    train_, val = sudoku.split(rest, val_frac=n_val / len(rest["puzzles"]), seed=seed + 1)
    check_disjoint(train=train_, val=val, test=test)
    return train_, val, test


def run_sudoku_cell(cfg: dict, train_data: dict, val_data: dict, progress: bool = True, device="cpu"):
    """Train one cell on ``device`` → (model with the kept state, history, metrics).

    ``cfg = {"model": {"kind": ..., **HRMConfig or SudokuBaselineConfig fields},
    "train": {**LoopConfig fields, **SudokuTaskConfig fields}}``, plain values only. The
    seed (``train.seed``) also seeds model initialisation. Metrics: best and final val
    numbers, parameters, steps, seed, wall time; ``convention`` names the accuracy convention.
    """
    loop_kw, task_kw = split_config(dict(cfg["train"]), LoopConfig, SudokuTaskConfig)
    loop_kw.setdefault("target", ("grid_acc", "cell_acc"))
    loop, task = LoopConfig(**loop_kw), SudokuTaskConfig(**task_kw)
    check_disjoint(train=train_data, val=val_data)
    torch.manual_seed(loop.seed)
    model = build_sudoku_model(cfg["model"]).to(device)
    puzzles, solutions = as_tensors(train_data)
    result = train(
        model,
        len(puzzles),
        lambda idx, rng: tuple(t.to(device) for t in make_batch(puzzles, solutions, idx, rng, task.augment)),
        lambda m, b, step: sudoku_loss(m, b, step, loop.steps, task),
        loop,
        evaluate=lambda m: evaluate_sudoku(m, val_data, task.eval_batch_size),
        progress=progress,
        desc=f"sudoku {cfg['model']['kind']}/{cfg['model'].get('injection', '-')}",
    )
    best, final = result.best or {}, result.final or {}
    metrics = {
        "best_step": best.get("step"),
        "best_val_grid_acc": best.get("grid_acc"),
        "best_val_cell_acc": best.get("cell_acc"),
        "final_val_grid_acc": final.get("grid_acc"),
        "final_val_cell_acc": final.get("cell_acc"),
        "final_val_loss": final.get("loss"),
        "restored_best": result.restored,
        "convention": "blank_cells",
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": loop.steps,
        "warmup_steps": loop.warmup_steps,
        "seed": loop.seed,
        "n_train": len(puzzles),
        "n_val": len(val_data["puzzles"]),
        "wall_s": result.wall_s,
        "s_per_step": result.wall_s / loop.steps,
    }
    history = {**result.history, "loop": config_dict(loop), "task": config_dict(task)}
    return model, history, metrics
