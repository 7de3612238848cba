"""Hybrid PoH-HRM Sudoku solver: HRM's two-level recurrence with PoH head routing.

HRM (Wang et al. 2025, "Hierarchical Reasoning Model") runs a fast module L and a slow
module H over fixed cell states; Eran-BA/PoT's hybrid puts a pointer controller (and an
optional feature injection) inside each module. A standard transformer (baseline.py) runs
its layers once, with no recurrence, no routing and no injection.

    e = √d · (E_tok[x] + P + E_puzzle[id])           [B, 81, D], E_puzzle zero-init, id 0
    z_H, z_L = fixed seeded random vectors (buffers) broadcast over cells
    repeat H_cycles { repeat L_cycles { z_L ← f_L(z_L, z_H + e) };  z_H ← f_H(z_H, z_L) }
    logits = W_o · RMSNorm(z_H)                       [B, 81, vocab]

Gradients: ``grad_mode: last_h_cycle`` runs every H cycle but the last under no_grad (the
last one, L_cycles L calls and one H call, carries gradient); ``one_step`` keeps only the last
L call and the last H call (HRM's 1-step gradient). L and H share no weights; each level has
its own controller, whose state (and cross_attn memory) persists across the calls of one
forward. Classes: the head has ``vocab`` = 10 outputs indexed by digit; class 0 (blank) is
never a target, and the trainer's loss covers blank cells only.

ACT (``halt_max_steps`` K > 1): K outer steps carrying z_H, z_L and both levels' controller
states; a Q head on mean-pooled z_H (weight 0, bias −5, so σ(q) ≈ 0.0067 at init) gives
q_halt, q_continue. Unlike the source, whose ablation never trained the Q head, every step
returns its logits and q values and Q-learning targets, for ``act_q_loss``; by default every
outer step carries gradient (through its own last H cycle; the carry is detached between
steps, HRM's deep supervision). A sequence halts at the first step with q_halt > q_continue;
``logits`` are taken at that step. In eval the loop stops once every sequence has halted.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from studies.poh.config import HRMConfig
from studies.poh.reasoning import LevelState, ReasoningModule


@dataclass
class SudokuOutput:
    logits: Tensor  # [B, 81, C]
    alpha: dict[str, Tensor] = field(default_factory=dict)  # level → [n_calls, B, H], detached
    entropy: Tensor | None = None  # [B] mean routing entropy over all calls, differentiable
    q_halt: Tensor | None = None  # [K_run, B]   (ACT only)
    q_continue: Tensor | None = None  # [K_run, B]
    target_q_continue: Tensor | None = None  # [K_run, B], detached Q-learning targets
    step_logits: Tensor | None = None  # [K_run, B, 81, C], one per outer step
    halt_step: Tensor | None = None  # [B] long, outer step whose logits are returned


def act_q_loss(q_halt: Tensor, q_cont: Tensor, solved: Tensor, target_q_cont: Tensor) -> Tensor:
    """0.5·BCE(q_halt, solved) + 0.5·MSE(σ(q_cont), target); any matching shapes."""
    bce = F.binary_cross_entropy_with_logits(q_halt, solved.to(q_halt.dtype))
    return 0.5 * bce + 0.5 * F.mse_loss(torch.sigmoid(q_cont), target_q_cont.detach())


class SudokuEmbedding(nn.Module):
    """√d · (E_tok[x] + P + E_puzzle[id]); E_tok and P ~ N(0, 1/d), E_puzzle = 0."""

    def __init__(self, vocab: int, d_model: int, seq_len: int = 81, num_puzzles: int = 1):
        super().__init__()
        self.scale, self.seq_len = math.sqrt(d_model), seq_len
        self.tok = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.tok.weight, std=1.0 / self.scale)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) / self.scale)
        self.puzzle = nn.Embedding(num_puzzles, d_model)
        nn.init.zeros_(self.puzzle.weight)

    def forward(self, inputs: Tensor, puzzle_ids: Tensor | None = None) -> Tensor:
        x = inputs.long()  # [B, S], 0 = blank, 1..9 digits
        if x.shape[1] != self.seq_len:
            raise ValueError(f"inputs have {x.shape[1]} cells, expected seq_len={self.seq_len}")
        if puzzle_ids is None:
            puzzle_ids = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        emb = self.tok(x) + self.pos + self.puzzle(puzzle_ids.long()).unsqueeze(1)
        return self.scale * emb  # [B, S, D]


def _detach_level(s: LevelState) -> LevelState:
    ctrl = type(s.ctrl)(h=s.ctrl.h.detach(), l=s.ctrl.l.detach(), t=s.ctrl.t)
    return LevelState(ctrl, None if s.memory is None else s.memory.detach())


class HybridHRM(nn.Module):
    def __init__(self, cfg: HRMConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = SudokuEmbedding(cfg.vocab, d, cfg.seq_len, cfg.num_puzzles)
        gen = torch.Generator().manual_seed(cfg.init_seed)  # fixed, not learned (HRM)
        for name in ("z_H_init", "z_L_init"):
            v = nn.init.trunc_normal_(torch.empty(d, device="cpu"), std=1.0, generator=gen)
            self.register_buffer(name, v)
        level = dict(
            T=cfg.T,
            temperature=cfg.temperature,
            topk=cfg.topk,
            d_ctrl=cfg.d_ctrl,
            routing_point=cfg.routing_point,
            injection=cfg.injection,
            memory_size=cfg.memory_size,
            memory_heads=cfg.memory_heads,
            alpha_agg=cfg.alpha_agg,
            use_learned_gate=cfg.use_learned_gate,
            entropy_norm=cfg.entropy_norm,
        )
        self.L_level = ReasoningModule(d, cfg.n_heads, cfg.d_ff, cfg.L_layers, **level)
        self.H_level = ReasoningModule(d, cfg.n_heads, cfg.d_ff, cfg.H_layers, **level)
        self.final_norm = nn.RMSNorm(d, eps=1e-6)
        self.out = nn.Linear(d, cfg.vocab)
        self.q_head = None
        if cfg.halt_max_steps > 1:
            self.q_head = nn.Linear(d, 2)
            nn.init.zeros_(self.q_head.weight)
            nn.init.constant_(self.q_head.bias, -5.0)

    def _segment(self, e, z_H, z_L, s_L, s_H, rec):
        """One H_cycles × L_cycles schedule; gradient only where the grad mode allows."""
        cfg, grad_on = self.cfg, torch.is_grad_enabled()
        for c in range(cfg.H_cycles):
            last = c == cfg.H_cycles - 1
            for j in range(cfg.L_cycles):
                keep = last and (cfg.grad_mode == "last_h_cycle" or j == cfg.L_cycles - 1)
                with torch.set_grad_enabled(grad_on and keep):
                    z_L, s_L, a, h = self.L_level(z_L, z_H + e, s_L)
                rec["L"].append(a)
                rec["ent"].append(h)
            with torch.set_grad_enabled(grad_on and last):
                z_H, s_H, a, h = self.H_level(z_H, z_L, s_H)
            rec["H"].append(a)
            rec["ent"].append(h)
        return z_H, z_L, s_L, s_H

    def _logits(self, z_H: Tensor) -> Tensor:
        return self.out(self.final_norm(z_H))  # [B, S, vocab]

    def forward(self, inputs: Tensor, puzzle_ids: Tensor | None = None) -> SudokuOutput:
        e = self.embed(inputs, puzzle_ids)  # [B, S, D]
        B, S, D = e.shape
        z_H, z_L = self.z_H_init.expand(B, S, D), self.z_L_init.expand(B, S, D)
        s_L, s_H = self.L_level.init_state(B, e), self.H_level.init_state(B, e)
        rec = {"L": [], "H": [], "ent": []}
        K, grad_on = self.cfg.halt_max_steps, torch.is_grad_enabled()
        step_logits, q_h, q_c = [], [], []
        for k in range(K):
            grad = grad_on and (self.cfg.act_grad_every_step or k == K - 1)
            with torch.set_grad_enabled(grad):
                z_H, z_L, s_L, s_H = self._segment(e, z_H, z_L, s_L, s_H, rec)
                step_logits.append(self._logits(z_H))
                if self.q_head is not None:
                    q = self.q_head(z_H.mean(1))  # [B, 2] from mean-pooled z_H
                    q_h.append(q[:, 0])
                    q_c.append(q[:, 1])
            if K == 1:
                break
            # carry to the next outer step without its graph (O(1) memory in K)
            z_H, z_L, s_L, s_H = z_H.detach(), z_L.detach(), _detach_level(s_L), _detach_level(s_H)
            if not self.training and bool((torch.stack(q_h) > torch.stack(q_c)).any(0).all()):
                break
        out = SudokuOutput(
            logits=step_logits[-1],
            alpha={lv: torch.cat(rec[lv]).detach() for lv in ("L", "H")},
            entropy=torch.cat(rec["ent"]).mean(0),
        )
        if K > 1:
            self._add_act(out, torch.stack(step_logits), torch.stack(q_h), torch.stack(q_c))
        return out

    def _add_act(self, out: SudokuOutput, logits: Tensor, q_h: Tensor, q_c: Tensor) -> None:
        K_run, K = q_h.shape[0], self.cfg.halt_max_steps
        halts = q_h > q_c  # [K_run, B]
        last = torch.full_like(halts[0], K_run - 1, dtype=torch.long)
        halt_step = torch.where(halts.any(0), halts.float().argmax(0), last)  # first halt
        with torch.no_grad():
            # HRM's target: value of the next step; it must halt if it is step K-1. The last
            # row (no next step exists) gets σ(q_halt) of itself, a placeholder target.
            nxt = torch.maximum(q_h[1:], q_c[1:])
            if K_run == K:
                nxt[-1] = q_h[-1]
            target = torch.sigmoid(torch.cat([nxt, q_h[-1:]]))  # [K_run, B]
        idx = halt_step.view(1, -1, 1, 1).expand(1, *logits.shape[1:])
        out.logits = logits.gather(0, idx).squeeze(0)  # [B, S, C] at each sequence's halt
        out.q_halt, out.q_continue, out.target_q_continue = q_h, q_c, target
        out.step_logits, out.halt_step = logits, halt_step
