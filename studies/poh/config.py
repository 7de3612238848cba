"""Configuration of the PoH-HRM Sudoku solver, validated on construction.

Defaults are the paper configuration of the feature-injection ablation (d 512, 8 heads,
d_ff 2048, H/L layers 2/2, H/L cycles 2/6, T 4) except ``halt_max_steps``, which is 1 (ACT
off) here; the paper used 4. Every error names the field and the allowed values.
"""

from dataclasses import dataclass

from studies.poh.injection import ALPHA_AGGS, ENTROPY_NORMS, INJECTION_MODES
from studies.poh.layers import ROUTING_POINTS

GRAD_MODES = ("last_h_cycle", "one_step")


def check_choice(owner: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{owner}.{name}={value!r} is not one of {allowed}")


def check_min(owner: str, name: str, value, lo) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{owner}.{name}={value!r} must be a number >= {lo}")


@dataclass(frozen=True)
class HRMConfig:
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    d_ctrl: int | None = None  # controller width; None = d_model (the source's choice)
    H_layers: int = 2
    L_layers: int = 2
    H_cycles: int = 2
    L_cycles: int = 6
    grad_mode: str = "last_h_cycle"  # last_h_cycle | one_step
    T: int = 4  # slow controller state updates every T calls
    temperature: float = 2.0  # routing softmax τ; the source's initial τ, never annealed
    topk: int | None = None  # keep the k largest α per sequence; None = all heads
    routing_point: str = "pre_proj"  # pre_proj | post_proj (source)
    injection: str = "none"  # none | broadcast | film | depth_token | cross_attn | alpha_gated
    memory_size: int = 16  # cross_attn: FIFO length
    memory_heads: int = 4  # cross_attn: heads of the memory attention
    alpha_agg: str = "mean"  # alpha_gated: mean | max | entropy
    use_learned_gate: bool = True  # alpha_gated: multiply agg(α) by σ(w_gᵀr)
    entropy_norm: str = "log"  # alpha_gated entropy: log (1 − H/ln H) | n_heads (source)
    halt_max_steps: int = 1  # ACT outer steps K; 1 = ACT off
    act_grad_every_step: bool = True  # ACT: every outer step carries gradient (else last)
    vocab: int = 10  # input tokens and output classes: 0 blank, 1..9 digits
    seq_len: int = 81
    num_puzzles: int = 1  # puzzle-embedding rows; id 0 when the caller passes none
    init_seed: int = 0  # seed of the fixed initial states z_H, z_L

    def __post_init__(self):
        own = "HRMConfig"
        for name in ("d_model", "n_heads", "d_ff", "H_layers", "L_layers", "H_cycles",
                     "L_cycles", "T", "memory_size", "memory_heads", "halt_max_steps",
                     "seq_len", "num_puzzles"):  # fmt: skip
            check_min(own, name, getattr(self, name), 1)
        check_min(own, "vocab", self.vocab, 2)
        check_min(own, "init_seed", self.init_seed, 0)
        if self.d_ctrl is not None:
            check_min(own, "d_ctrl", self.d_ctrl, 1)
        if not self.temperature > 0:
            raise ValueError(f"{own}.temperature={self.temperature!r} must be > 0")
        if self.d_model % self.n_heads:
            raise ValueError(f"{own}.d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.injection == "cross_attn" and self.d_model % self.memory_heads:
            raise ValueError(
                f"{own}.d_model={self.d_model} must be a multiple of "
                f"memory_heads={self.memory_heads} for injection='cross_attn'"
            )
        if self.topk is not None and not 1 <= self.topk <= self.n_heads:
            raise ValueError(f"{own}.topk={self.topk!r} must be None or in 1..{self.n_heads}")
        check_choice(own, "grad_mode", self.grad_mode, GRAD_MODES)
        check_choice(own, "routing_point", self.routing_point, ROUTING_POINTS)
        check_choice(own, "injection", self.injection, INJECTION_MODES)
        check_choice(own, "alpha_agg", self.alpha_agg, ALPHA_AGGS)
        check_choice(own, "entropy_norm", self.entropy_norm, ENTROPY_NORMS)
        for name in ("use_learned_gate", "act_grad_every_step"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{own}.{name}={getattr(self, name)!r} is not one of (True, False)")
