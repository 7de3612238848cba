"""One training cell of the energy-based solver on the shared loop (studies/train_loop.py).

The loop gets three callables: `make_batch` (augmented with the validity-preserving Sudoku
symmetries), `loss_fn` (the §4 loss, plus the target encoder's EMA step) and `evaluate`
(solver metrics on the VALIDATION split in a solver mode, z_zero or langevin — never oracle_z,
whose latent is built from the solution: the source's trap). The kept state is the best on
`target` (default puzzle then blank-cell accuracy), never on energy (the log's run 1 bug).

Device: the model is initialised on the CPU (seeded), then moved to `device`; batches are drawn
and augmented on the CPU and moved, so a CPU run is the same whatever machine. `precision`
"bf16" runs the training pass under bfloat16 autocast (mixed precision: weights and optimizer
stay fp32; no loss scaling is needed with bf16); "fp32" is plain.

EMA timing: train_loop has no post-step hook, so the update that folds in optimizer step s − 1
runs at the start of step s, with step s − 1's momentum; step 0 has nothing to fold in (the
target starts as a copy). The last step's update is dropped; its momentum is 1, a no-op.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from studies import train_loop
from studies.data import sudoku
from studies.ebm.grid import solution_onehot
from studies.ebm.langevin import SOLVER_MODES, decode
from studies.ebm.loss import LossWeights, ebm_loss
from studies.ebm.metrics import solver_metrics
from studies.ebm.model import EBMConfig, EBMSudoku


@dataclass(frozen=True)
class EvalConfig:
    mode: str = "z_zero"  # the decoding mode of checkpoint selection: z_zero | langevin
    chains: int = 4
    steps: int = 20
    eta: float = 0.01
    noise: float = 0.005
    seed: int = 0  # Langevin noise; the same at every evaluation, so checkpoints compare fairly
    batch_size: int = 256

    def __post_init__(self):
        if self.mode not in SOLVER_MODES:
            raise ValueError(
                f"EvalConfig.mode={self.mode!r}: selection must use a solver mode {SOLVER_MODES}; "
                "oracle_z decodes a latent built from the solution"
            )


def tensors(data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(puzzles, solutions) as int64 tensors [N, 81] from the studies.data.sudoku arrays."""
    return torch.as_tensor(data["puzzles"].astype(np.int64)), torch.as_tensor(data["solutions"].astype(np.int64))


PRECISIONS = ("fp32", "bf16")


def make_batch_fn(data: dict, augment: bool = True, device="cpu"):
    """Rows `idx`, each under its own random symmetry (digit relabelling, band/stack/row/column
    shuffles, transpose) when `augment`: the same to puzzle and solution; moved to `device`."""
    puzzles, solutions = data["puzzles"], data["solutions"]

    def make_batch(idx: np.ndarray, rng: np.random.Generator):
        p, s = puzzles[idx], solutions[idx]
        if augment:
            p, s = sudoku.augment(p, s, rng)
        return torch.as_tensor(p.astype(np.int64)).to(device), torch.as_tensor(s.astype(np.int64)).to(device)

    return make_batch


def loss_fn_for(weights: LossWeights, steps: int, precision: str = "fp32"):
    """The loop's loss_fn: EMA step (see module docstring), training pass, §4 loss; the pass
    under bfloat16 autocast with `precision` "bf16" (the loss itself in fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")

    def loss_fn(model: EBMSudoku, batch, step: int):
        momentum = model.ema_update(step - 1, steps) if step > 0 else None
        puzzles, solutions = batch
        bf16 = precision == "bf16"
        with torch.autocast(puzzles.device.type, torch.bfloat16) if bf16 else contextlib.nullcontext():
            out = model(puzzles, solution_onehot(solutions))
        out = {k: v.float() for k, v in out.items()}
        loss, logs = ebm_loss(out, solutions, puzzles, weights)
        if momentum is not None:
            logs["ema_momentum"] = momentum
        return loss, logs

    return loss_fn


def evaluate_split(model: EBMSudoku, data: dict, mode: str, ecfg: EvalConfig | None = None) -> dict[str, float]:
    """Solver metrics (studies/ebm/metrics.py) of `mode` on a split, decoded in batches. Only
    oracle_z is handed the solutions; the solver modes see the puzzles alone. Batches go to the
    model's device; the boards come back to the CPU."""
    ecfg = ecfg or EvalConfig()
    device = next(model.parameters()).device
    puzzles, solutions = (t.to(device) for t in tensors(data))
    gen = torch.Generator().manual_seed(ecfg.seed)
    lkw = {"chains": ecfg.chains, "steps": ecfg.steps, "eta": ecfg.eta, "noise": ecfg.noise, "generator": gen}
    boards = []
    for lo in range(0, len(puzzles), ecfg.batch_size):
        p = puzzles[lo : lo + ecfg.batch_size]
        sol = solutions[lo : lo + ecfg.batch_size] if mode == "oracle_z" else None
        boards.append(decode(model, p, mode, solutions=sol, **(lkw if mode == "langevin" else {})).boards.cpu())
    pred = torch.cat(boards).numpy()
    return solver_metrics(pred, data["solutions"], data["puzzles"])


def train_cell(
    train: dict,
    val: dict,
    model_cfg: EBMConfig,
    loop_cfg: train_loop.LoopConfig,
    weights: LossWeights | None = None,
    ecfg: EvalConfig | None = None,
    augment: bool = True,
    progress: bool = False,
    device="cpu",
    precision: str = "fp32",
) -> tuple[EBMSudoku, train_loop.LoopResult]:
    """Build (seeded by loop_cfg.seed, on the CPU) and train one model on `device`; selection on
    `val` in ecfg.mode. Evaluation metrics are logged as val_<metric> (the loop's `target`)."""
    weights, ecfg = weights or LossWeights(), ecfg or EvalConfig()
    torch.manual_seed(loop_cfg.seed)
    model = EBMSudoku(model_cfg).to(device)

    def evaluate(m):
        return {f"val_{k}": v for k, v in evaluate_split(m, val, ecfg.mode, ecfg).items()}

    result = train_loop.train(
        model,
        len(train["puzzles"]),
        make_batch_fn(train, augment, device),
        loss_fn_for(weights, loop_cfg.steps, precision),
        loop_cfg,
        evaluate=evaluate,
        progress=progress,
        desc="ebm",
    )
    return model, result
