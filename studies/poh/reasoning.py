"""One PoH reasoning module f(z, u): controller → α, injection, n post-norm PoH blocks.

This is HRM's reasoning module (Wang et al. 2025, "Hierarchical Reasoning Model": input
injection x = z + u, then a post-norm transformer stack) with two PoH additions
(Eran-BA/PoT): a pointer controller weights the attention heads of every block, and an
optional feature-injection mode writes the controller feature r into the tokens. With
injection ``none`` and a uniform α it reduces to HRM's module.

``route_every``:
- ``call`` (Sudoku HRM): one controller call per module call; its α weights all n layers.
- ``layer`` (maze refinement): one controller call before every layer, on the current
  tokens, so a depth-D stack run R times makes D·R calls and the period T counts layers.
  Injection still happens once, with the first call's r and α.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from studies.poh.controller import ControllerState, PointerController
from studies.poh.injection import make_injection
from studies.poh.layers import PoHBlock

ROUTE_EVERY = ("call", "layer")


@dataclass
class LevelState:
    ctrl: ControllerState
    memory: Tensor | None = None  # [B, ≤memory_size, D], cross_attn injection only


class ReasoningModule(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        *,
        T: int = 4,
        temperature: float = 1.0,
        topk: int | None = None,
        d_ctrl: int | None = None,
        routing_point: str = "pre_proj",
        injection: str = "none",
        memory_size: int = 16,
        memory_heads: int = 4,
        alpha_agg: str = "mean",
        use_learned_gate: bool = True,
        entropy_norm: str = "log",
        norm: str = "rms",
        ffn: str = "swiglu",
        dropout: float = 0.0,
        route_every: str = "call",
    ):
        super().__init__()
        if route_every not in ROUTE_EVERY:
            raise ValueError(f"route_every={route_every!r} is not one of {ROUTE_EVERY}")
        self.route_every = route_every
        self.controller = PointerController(d_model, n_heads, d_ctrl, T, temperature, topk)
        self.injection = make_injection(
            injection,
            d_model,
            self.controller.d_ctrl,
            memory_size,
            memory_heads,
            alpha_agg,
            use_learned_gate,
            entropy_norm,
        )
        self.blocks = nn.ModuleList(
            PoHBlock(d_model, n_heads, d_ff, norm, ffn, routing_point, dropout) for _ in range(n_layers)
        )

    def init_state(self, batch: int, like: Tensor) -> LevelState:
        return LevelState(ctrl=self.controller.init_state(batch, like))

    def forward(self, z: Tensor, u: Tensor | None, state: LevelState) -> tuple[Tensor, LevelState, Tensor, Tensor]:
        """z, u: [B, S, D] → (z' [B, S, D], state', α [n_calls, B, H], entropy [n_calls, B])."""
        x = z if u is None else z + u  # input injection
        out = self.controller(x, state.ctrl)
        ctrl, alphas, ents = out.state, [out.alpha], [out.entropy]
        x, memory = self.injection(x, out.r, out.alpha, state.memory)  # may prepend a token
        for i, block in enumerate(self.blocks):
            if self.route_every == "layer" and i > 0:
                out = self.controller(x, ctrl)
                ctrl = out.state
                alphas.append(out.alpha)
                ents.append(out.entropy)
            x = block(x, out.alpha)
        if self.injection.adds_token:
            x = x[:, 1:]  # drop the depth token: back to [B, S, D]
        return x, LevelState(ctrl, memory), torch.stack(alphas), torch.stack(ents)
