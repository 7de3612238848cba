"""The §4 training loss: energy ‖z_pred − z_tgt‖² + VICReg on z_ctx + CE on blank cells
+ constraint_weight × the 27-group constraint penalty.

Why each term (the log's lessons): VICReg sits on z_ctx, not z_pred, or the target encoder
collapses; CE counts blank cells only, or copying givens hides failure; the constraint penalty
teaches the rules Langevin later descends on. The source's VICReg invariance weight (25) was
never used and has no term here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from studies.data.sudoku import UNITS

_UNITS = torch.tensor(UNITS.tolist())
VAR_EPS = 1e-4  # std = sqrt(var + eps) (VICReg paper); the source's plain std has an infinite gradient at collapse


@dataclass(frozen=True)
class LossWeights:
    var_weight: float = 1.0
    cov_weight: float = 0.01
    decode_weight: float = 1.0
    constraint_weight: float = 0.1

    def __post_init__(self):
        for name in ("var_weight", "cov_weight", "decode_weight", "constraint_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossWeights.{name}={getattr(self, name)} must be >= 0")


def vicreg_terms(z: torch.Tensor, target_std: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(variance, covariance) of a batch z [B, D]: mean over dims of relu(target_std − std_j),
    and the sum of squared off-diagonal covariances / D (covariance with 1/(B−1))."""
    if z.shape[0] < 2:
        raise ValueError(f"VICReg needs a batch of at least 2, got {z.shape[0]}")
    centred = z - z.mean(0)
    std = torch.sqrt(centred.pow(2).sum(0) / (z.shape[0] - 1) + VAR_EPS)
    cov = centred.T @ centred / (z.shape[0] - 1)
    off = cov - torch.diag(cov.diagonal())
    return F.relu(target_std - std).mean(), off.pow(2).sum() / z.shape[1]


def constraint_penalty(probs: torch.Tensor) -> torch.Tensor:
    """probs [B, 81, 9] → [B]: Σ_groups Σ_digits (Σ_{cells in group} p − 1)² over the 27
    rows/columns/boxes; 0 exactly when every digit has total mass 1 in every group."""
    mass = probs[:, _UNITS.to(probs.device)].sum(2)  # [B, 27, 9]
    return (mass - 1).pow(2).sum((1, 2))


def blank_cross_entropy(logits: torch.Tensor, solutions: torch.Tensor, puzzles: torch.Tensor) -> torch.Tensor:
    """Mean CE over blank cells only (givens, hard-set by the decoder, never count)."""
    blank = puzzles == 0
    return F.cross_entropy(logits[blank], solutions[blank].long() - 1)


def ebm_loss(out: dict, solutions: torch.Tensor, puzzles: torch.Tensor, w: LossWeights):
    """(total, logs) from the model's training pass `out` (see EBMSudoku.forward)."""
    energy = (out["z_pred"] - out["z_tgt"]).pow(2).sum(-1).mean()
    var, cov = vicreg_terms(out["z_ctx"])
    ce = blank_cross_entropy(out["logits"], solutions, puzzles)
    penalty = constraint_penalty(out["logits"].softmax(-1)).mean()
    total = energy + w.var_weight * var + w.cov_weight * cov + w.decode_weight * ce + w.constraint_weight * penalty
    logs = {"energy": energy.item(), "var": var.item(), "cov": cov.item(), "ce": ce.item(), "penalty": penalty.item()}
    return total, logs
