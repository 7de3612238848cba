"""Decoding a trained model into boards, in one of three labelled modes:

- `langevin` (a solver): K chains per puzzle from z ~ N(0, I), T steps of
  z ← z − η∇E(z) + s·τ·ε, τ = 1 − t/T, on the self-consistency energy
  E = ‖predictor(z_ctx, z) − target_encoder(softmax(decoder(z)))‖² + (1 + 2(1 − τ))·penalty;
  the chain with the lowest final energy (τ = 0) is kept per puzzle. (The source ranks chains
  by the energy computed before its last update, one step stale; we rank at the final z.)
- `z_zero` (a solver): one decode at z = 0 — cheap, for checkpoint selection.
- `oracle_z` (NOT a solver): z built from the solution, as the source's training-time
  accuracies were. Reported only in its own labelled column.

Chains × puzzles run as one batch (row b·K + k is chain k of puzzle b), and all noise comes
from one seeded CPU generator (drawn on the CPU, then moved to the model's device), so a seed
fixes the result on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studies.ebm.grid import solution_onehot
from studies.ebm.loss import constraint_penalty

MODES = ("langevin", "z_zero", "oracle_z")
SOLVER_MODES = ("langevin", "z_zero")


@dataclass
class Decoded:
    mode: str
    logits: torch.Tensor  # [B, 81, 9]
    energy: torch.Tensor | None = None  # [B] final energy of the kept chain (langevin)
    chain: torch.Tensor | None = None  # [B] index of the kept chain (langevin)
    trajectory: torch.Tensor | None = None  # [T+1, B, 81, 9] probabilities of the kept chain

    @property
    def boards(self) -> torch.Tensor:
        """[B, 81] digits 1-9 (givens are hard-set by the decoder)."""
        return self.logits.argmax(-1) + 1


def energy(model, tokens, z_ctx, z, puzzles, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(E [N], logits [N, 81, 9]) at latent z: self-consistency + annealed constraint penalty."""
    logits = model.decode(tokens, z_ctx, z, puzzles)
    probs = logits.softmax(-1)
    consistency = (model.predict(z_ctx, z) - model.target(probs)).pow(2).sum(-1)
    return consistency + (1 + 2 * (1 - tau)) * constraint_penalty(probs), logits


def select_lowest(energies: torch.Tensor, *per_chain: torch.Tensor):
    """energies [B, K] → (best chain [B], each of per_chain [B·K, ...] reduced to [B, ...])."""
    best = energies.argmin(1)
    rows = torch.arange(energies.shape[0], device=energies.device) * energies.shape[1] + best
    return best, *(t[rows] for t in per_chain)


def langevin(
    model,
    puzzles: torch.Tensor,
    chains: int = 8,
    steps: int = 50,
    eta: float = 0.01,
    noise: float = 0.005,
    generator: torch.Generator | None = None,
    record: bool = False,
) -> Decoded:
    """Langevin decode (module docstring). `record` keeps the kept chain's probabilities at
    every step (for the lock-in and strategy analyses). T = 0 decodes the sampled z directly."""
    if chains < 1 or steps < 0:
        raise ValueError(f"langevin needs chains >= 1 and steps >= 0, got chains={chains}, steps={steps}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens, z_ctx = model.context(puzzles)
    tokens, z_ctx, puz = (t.repeat_interleave(chains, 0) for t in (tokens, z_ctx, puzzles))
    z = torch.randn(len(puz), model.cfg.d_z, generator=generator).to(puz.device)
    frames = []
    with torch.enable_grad():
        for t in range(steps):
            tau = 1 - t / steps
            z = z.detach().requires_grad_(True)
            e, logits = energy(model, tokens, z_ctx, z, puz, tau)
            if record:
                frames.append(logits.detach().softmax(-1))
            (grad,) = torch.autograd.grad(e.sum(), z)
            eps = torch.randn(z.shape, generator=generator).to(z.device)
            z = z.detach() - eta * grad + noise * tau * eps
    with torch.no_grad():
        e, logits = energy(model, tokens, z_ctx, z, puz, tau=0.0)
    if record:
        frames.append(logits.softmax(-1))
    per_chain = [logits]
    if record:
        per_chain.append(torch.stack(frames, 1))  # [B·K, T+1, 81, 9]
    best, e_best, *picked = select_lowest(e.view(-1, chains), e, *per_chain)
    model.train(was_training)
    traj = picked[1].transpose(0, 1) if record else None
    return Decoded("langevin", picked[0], energy=e_best, chain=best, trajectory=traj)


@torch.no_grad()
def z_zero(model, puzzles: torch.Tensor) -> Decoded:
    """One decode at z = 0 (no sampling, no solution)."""
    tokens, z_ctx = model.context(puzzles)
    z = torch.zeros(len(puzzles), model.cfg.d_z, device=puzzles.device)
    return Decoded("z_zero", model.decode(tokens, z_ctx, z, puzzles))


@torch.no_grad()
def oracle_z(model, puzzles: torch.Tensor, solutions: torch.Tensor) -> Decoded:
    """Decode at the noiseless latent of the true solution — an upper reference, never a solver."""
    tokens, z_ctx = model.context(puzzles)
    z = model.latent(model.target(solution_onehot(solutions)))
    return Decoded("oracle_z", model.decode(tokens, z_ctx, z, puzzles))


def decode(model, puzzles, mode: str, solutions=None, **langevin_kw) -> Decoded:
    """Decode in `mode`; only `oracle_z` reads `solutions` (the solver modes never touch it)."""
    if mode not in MODES:
        raise ValueError(f"unknown decoding mode {mode!r}; expected one of {MODES}")
    was_training = model.training
    model.eval()
    try:
        if mode == "langevin":
            return langevin(model, puzzles, **langevin_kw)
        if mode == "z_zero":
            return z_zero(model, puzzles)
        if solutions is None:
            raise ValueError("decoding mode 'oracle_z' needs the solutions (it is the oracle, not a solver)")
        return oracle_z(model, puzzles, solutions)
    finally:
        model.train(was_training)
