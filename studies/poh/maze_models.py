"""Maze path models: a standard encoder baseline and a PoH refinement model.

Formulation (a next-hop field, the source's, extended to K horizons): the n×n maze is n²
tokens, one per cell. Token i = W_c·walls_i (4 bits, open N/E/S/W) + P_i + E_start[i = start]
+ E_goal[i = goal] + g, where g = CNN(maze image) is one vector added to every token (two 3×3
convs, 16 and 32 channels, 4×4 adaptive pool, linear; ``use_cnn: false`` drops it). The
image is rendered from the wall bits inside the model, so both always agree. The model reads
the maze once and outputs, for every cell i and horizon k = 1..K,

    logits[b, i, k-1, j] = score that cell j is the k-th cell after cell i on the path.

The trainer supervises token path[t] with path[t+1..t+K]; greedy roll-out needs one forward
per maze and reads row ``current`` (pass ``current`` [B] to get [B, K, n²] directly), masks
it with ``valid_next_mask`` (connected, in-bounds neighbours) minus visited cells, and moves.
DFS mazes are trees, so the next hop toward the goal is unique for every cell. Logits are
raw and unmasked, so masking with −inf before label smoothing is the trainer's step.

- ``MazeBaseline``: post-norm encoder of depth D (LayerNorm, GELU MLP), applied once.
- ``MazePoH``: the same embedding and head; R refinement passes of a depth-D stack of PoH
  blocks, h ← h + a·(Stack(h) − h), where ``a`` is one learnable scalar (init
  ``refine_init`` = 1, so pass 1 equals one plain stack pass; ``refine_learnable: false``
  fixes it). One controller serves the stack; its state starts at zero each forward and is
  carried across blocks and passes (``route_every: layer``: D·R calls, T counts blocks;
  ``call``: one call per pass). The source's maze router instead detached its state and
  kept it on the module across batches. Gradients flow through all R passes.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from studies.poh.baseline import TransformerEncoder
from studies.poh.config import check_choice, check_min
from studies.poh.layers import ROUTING_POINTS
from studies.poh.reasoning import ROUTE_EVERY, ReasoningModule


@dataclass(frozen=True)
class MazeConfig:
    n: int = 16  # maze side; n² tokens
    d_model: int = 768
    n_heads: int = 12
    d_ff: int = 3072
    depth: int = 6  # blocks per stack (D)
    horizons: int = 3  # K output heads: cells t+1..t+K
    use_cnn: bool = True
    dropout: float = 0.0
    R: int = 4  # PoH refinement passes
    T: int = 4  # PoH slow-state period, in controller calls
    temperature: float = 2.0  # routing softmax τ; the source controller's default
    topk: int | None = None
    d_ctrl_ratio: float = 0.5  # controller width / d_model (the source used d/2 here)
    routing_point: str = "pre_proj"
    route_every: str = "layer"  # layer | call (once per pass)
    refine_init: float = 1.0  # initial a in h ← h + a·(Stack(h) − h)
    refine_learnable: bool = True

    def __post_init__(self):
        own = "MazeConfig"
        for name in ("d_model", "n_heads", "d_ff", "depth", "horizons", "R", "T"):
            check_min(own, name, getattr(self, name), 1)
        check_min(own, "n", self.n, 2)
        if self.d_model % self.n_heads:
            raise ValueError(f"{own}.d_model={self.d_model} is not a multiple of n_heads")
        for name, ok, rule in (
            ("d_ctrl_ratio", 0 < self.d_ctrl_ratio <= 4, "in (0, 4]"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("temperature", self.temperature > 0, "> 0"),
        ):
            if not ok:
                raise ValueError(f"{own}.{name}={getattr(self, name)!r} must be {rule}")
        for name in ("use_cnn", "refine_learnable"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{own}.{name}={getattr(self, name)!r} is not one of (True, False)")
        if self.topk is not None and not 1 <= self.topk <= self.n_heads:
            raise ValueError(f"{own}.topk={self.topk!r} must be None or in 1..{self.n_heads}")
        check_choice(own, "routing_point", self.routing_point, ROUTING_POINTS)
        check_choice(own, "route_every", self.route_every, ROUTE_EVERY)


@dataclass
class MazeOutput:
    logits: Tensor  # [B, n², K, n²], or [B, K, n²] when ``current`` was given
    alpha: Tensor | None = None  # [n_calls, B, H] routing weights, detached (PoH only)
    entropy: Tensor | None = None  # [B] mean routing entropy, differentiable (PoH only)


def _neighbours(n: int, device) -> Tensor:
    """Index of the N/E/S/W neighbour of every cell [n², 4]; n² where it is out of bounds."""
    cell = torch.arange(n * n, device=device)
    r, c = cell.div(n, rounding_mode="floor"), cell % n
    rr = r[:, None] + torch.tensor([-1, 0, 1, 0], device=device)  # [n², 4]
    cc = c[:, None] + torch.tensor([0, 1, 0, -1], device=device)
    inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
    return torch.where(inside, rr * n + cc, n * n)


def unpack_walls(walls: Tensor) -> Tensor:
    """Packed open-side bits [B, n²] (N=1, E=2, S=4, W=8, as studies.data.mazes stores them)
    → [B, n², 4] 0/1 in N/E/S/W order; an already unpacked [B, n², 4] passes through."""
    if walls.dim() == 3 and walls.shape[-1] == 4:
        return walls
    if walls.dim() != 2:
        raise ValueError(f"walls must be [B, n²] packed bits or [B, n², 4], got {tuple(walls.shape)}")
    return (walls.long().unsqueeze(-1) >> torch.arange(4, device=walls.device)) & 1


def valid_next_mask(walls: Tensor, n: int) -> Tensor:
    """walls ([B, n²] packed or [B, n², 4]) → [B, n², n²] bool: j is a connected, in-bounds
    neighbour of i."""
    walls = unpack_walls(walls)
    idx = _neighbours(n, walls.device)  # out-of-bounds moves land in a spare column n²
    ok = walls.bool() & (idx < n * n)  # [B, n², 4]
    mask = torch.zeros(*walls.shape[:2], n * n + 1, dtype=torch.bool, device=walls.device)
    return mask.scatter_(2, idx.expand_as(ok), ok)[..., : n * n]


def walls_to_image(walls: Tensor, n: int) -> Tensor:
    """walls → [B, 1, 2n+1, 2n+1] image, 1 = free (cell or open passage), 0 = wall."""
    walls = unpack_walls(walls)
    B = walls.shape[0]
    w = walls.float().view(B, n, n, 4)
    img = walls.new_zeros(B, 2 * n + 1, 2 * n + 1, dtype=torch.float32)
    img[:, 1::2, 1::2] = 1.0
    east = w[..., 1].clone()  # passage (r, c)–(r, c+1): E of left or W of right
    east[:, :, :-1] = torch.maximum(east[:, :, :-1], w[:, :, 1:, 3])
    east[:, :, -1] = 0.0  # outer wall
    south = w[..., 2].clone()  # passage (r, c)–(r+1, c)
    south[:, :-1] = torch.maximum(south[:, :-1], w[:, 1:, :, 0])
    south[:, -1] = 0.0
    img[:, 1::2, 2::2], img[:, 2::2, 1::2] = east, south
    return img.unsqueeze(1)


class MazeEmbedding(nn.Module):
    def __init__(self, n: int, d_model: int, use_cnn: bool = True):
        super().__init__()
        self.n = n
        self.walls = nn.Linear(4, d_model, bias=False)  # W_c
        self.pos = nn.Parameter(torch.randn(n * n, d_model))  # P, N(0, 1) like nn.Embedding
        self.start, self.goal = nn.Parameter(torch.randn(d_model)), nn.Parameter(torch.randn(d_model))
        self.cnn = None
        if use_cnn:
            self.cnn = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, d_model),
            )  # fmt: skip

    def forward(self, walls: Tensor, start: Tensor, goal: Tensor) -> Tensor:
        N = self.n * self.n  # walls [B, N] packed or [B, N, 4]; start, goal [B] cells r·n + c
        walls = unpack_walls(walls)
        if walls.shape[1] != N:
            raise ValueError(f"walls have {walls.shape[1]} cells, expected n²={N}")
        x = self.walls(walls.float()) + self.pos  # [B, N, D]
        x = x + F.one_hot(start.long(), N).unsqueeze(-1).to(x.dtype) * self.start
        x = x + F.one_hot(goal.long(), N).unsqueeze(-1).to(x.dtype) * self.goal
        if self.cnn is not None:
            x = x + self.cnn(walls_to_image(walls, self.n).to(x.dtype)).unsqueeze(1)  # g [B,1,D]
        return x


class MazeHead(nn.Module):
    """LayerNorm then K linear heads over the n² cells."""

    def __init__(self, d_model: int, n_cells: int, horizons: int):
        super().__init__()
        self.k, self.n_cells = horizons, n_cells
        self.norm, self.proj = nn.LayerNorm(d_model), nn.Linear(d_model, horizons * n_cells)

    def forward(self, h: Tensor, current: Tensor | None = None) -> Tensor:
        if current is not None:  # h [B, N, D] → the current cell's token [B, D]
            h = h[torch.arange(h.shape[0], device=h.device), current.long()]
        logits = self.proj(self.norm(h))
        return logits.unflatten(-1, (self.k, self.n_cells))  # [B, (N,) K, N]


class MazeBaseline(nn.Module):
    def __init__(self, cfg: MazeConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = MazeEmbedding(cfg.n, cfg.d_model, cfg.use_cnn)
        self.encoder = TransformerEncoder(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.depth, "layer", "gelu", cfg.dropout)
        self.head = MazeHead(cfg.d_model, cfg.n * cfg.n, cfg.horizons)

    def forward(self, walls, start, goal, current=None) -> MazeOutput:
        return MazeOutput(self.head(self.encoder(self.embed(walls, start, goal)), current))


class MazePoH(nn.Module):
    def __init__(self, cfg: MazeConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = MazeEmbedding(cfg.n, cfg.d_model, cfg.use_cnn)
        self.stack = ReasoningModule(
            cfg.d_model,
            cfg.n_heads,
            cfg.d_ff,
            cfg.depth,
            T=cfg.T,
            temperature=cfg.temperature,
            topk=cfg.topk,
            d_ctrl=max(1, round(cfg.d_ctrl_ratio * cfg.d_model)),
            routing_point=cfg.routing_point,
            norm="layer",
            ffn="gelu",
            dropout=cfg.dropout,
            route_every=cfg.route_every,
        )
        rate = torch.tensor(float(cfg.refine_init))
        if cfg.refine_learnable:
            self.refine_rate = nn.Parameter(rate)
        else:
            self.register_buffer("refine_rate", rate)
        self.head = MazeHead(cfg.d_model, cfg.n * cfg.n, cfg.horizons)

    def forward(self, walls, start, goal, current=None) -> MazeOutput:
        h = self.embed(walls, start, goal)  # [B, N, D]
        state = self.stack.init_state(h.shape[0], h)
        alphas, ents = [], []
        for _ in range(self.cfg.R):
            s, state, a, e = self.stack(h, None, state)  # state carried across passes
            h = h + self.refine_rate * (s - h)
            alphas.append(a)
            ents.append(e)
        alpha, ent = torch.cat(alphas), torch.cat(ents)  # [R·calls, B, H], [R·calls, B]
        return MazeOutput(self.head(h, current), alpha.detach(), ent.mean(0))


def build_maze_model(cfg: MazeConfig, kind: str) -> nn.Module:
    check_choice("build_maze_model", "kind", kind, ("baseline", "poh"))
    return MazeBaseline(cfg) if kind == "baseline" else MazePoH(cfg)
