"""The JEPA energy model of the energy-based solver (docs/studies.md; after MVPandey/Enso, checked against its source).

    puzzle ──context encoder──► T_ctx [B,81,d], z_ctx = mean(T_ctx) [B,d]
    solution ─target encoder (EMA of context, no grad)─► z_tgt [B,d]
    z = normalize(z_encoder(z_tgt)) + σε                        (training; Langevin at inference)
    predictor([z_ctx; z]) = z_pred ≈ z_tgt                      (the energy)
    decoder([z_ctx; z] (+ T_ctx per cell)) → 9 logits per cell, givens hard-set

Where we differ from the source, its behaviour is a switch:
- `target_proj`: the source's target encoder has its own 9-channel input projection whose
  weight stays at its random initialisation (the EMA skips it: shapes differ; the bias, same
  shape, is averaged). "ema" (ours) feeds the solution
  through the context encoder's 10-channel projection with an all-zero blank channel, so the
  target encoder is an exact EMA copy; "frozen" reproduces the source.
- `cell_context`: off in the source (the decoder sees only pooled z_ctx); on, the decoder also
  gets a projection of each cell's context token — the CPU evidence in docs/studies.md (energy-based solver).
- `z_norm` / `z_noise`: the log's run 2 (no normalisation, noise 1.0) vs run 4 (unit norm, 0.1).
- `pos_std`: the row/column/box embeddings' initial s.d. The source keeps PyTorch's N(0, 1)
  (1.0), whose sum of three tables is ~5x the one-hot digit projection, so for the first
  hundreds of CPU steps the cells look alike and the blank-cell CE stays at ln 9; 0.02 lets the
  digits through from the start (the CPU default).
The target encoder stays in eval mode (no dropout on targets) whatever mode the model is in.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from studies.ebm.grid import givens_mask, puzzle_onehot

GIVEN_LOGIT = 1e4  # hard-set givens: softmax is exactly one-hot, and it fits in fp16/bf16


@dataclass(frozen=True)
class EBMConfig:
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 1024
    d_z: int = 128
    d_pred: int = 512  # predictor hidden width
    dec_layers: int = 2
    dec_heads: int = 4
    d_cell: int = 64  # decoder width per cell (its FFN is 4·d_cell, as in the source)
    dropout: float = 0.1
    cell_context: bool = False
    z_norm: bool = True
    z_noise: float = 0.1  # σ of the noise added to the training latent
    target_proj: str = "ema"  # ema | frozen (the source)
    pos_std: float = 1.0  # initial s.d. of the position tables (1.0: PyTorch's default, the source)

    def __post_init__(self):
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "d_z", "d_pred", "dec_layers", "dec_heads", "d_cell"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"EBMConfig.{name}={v!r} must be an int >= 1")
        for width, heads in (("d_model", "n_heads"), ("d_cell", "dec_heads")):
            if getattr(self, width) % getattr(self, heads):
                raise ValueError(f"EBMConfig.{width}={getattr(self, width)} is not divisible by {heads}")
        if self.target_proj not in ("ema", "frozen"):
            raise ValueError(f"EBMConfig.target_proj={self.target_proj!r} is not one of ('ema', 'frozen')")
        if self.pos_std <= 0:
            raise ValueError(f"EBMConfig.pos_std={self.pos_std} must be > 0")
        if not 0 <= self.dropout < 1 or self.z_noise < 0:
            raise ValueError(f"EBMConfig: dropout={self.dropout} must be in [0, 1), z_noise={self.z_noise} >= 0")


PAPER_7M = EBMConfig()  # the log's runs 1-4: 7,471,945 trainable parameters
PAPER_36M = EBMConfig(
    d_model=512, n_layers=8, n_heads=8, d_ff=2048, d_z=256, d_pred=1024, dec_layers=4, dec_heads=8, d_cell=128
)  # run 5: 36,505,481
CPU_SMALL = EBMConfig(
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=256,
    d_z=24,
    d_pred=96,
    dec_layers=2,
    dec_heads=4,
    d_cell=32,
    dropout=0.0,
    cell_context=True,
)  # 387,681: the size of docs/studies.md (energy-based solver)'s CPU evidence model (389k)
CONFIGS = {"paper_7m": PAPER_7M, "paper_36m": PAPER_36M, "cpu_small": CPU_SMALL}


def config(name: str, **overrides) -> EBMConfig:
    """A named configuration with fields overridden (unknown names are errors)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown EBM config {name!r}; known: {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)


class Positions(nn.Module):
    """Learned row + column + box embeddings: cells sharing a Sudoku unit share a component."""

    def __init__(self, d: int, std: float = 1.0):
        super().__init__()
        self.row, self.col, self.box = (nn.Embedding(9, d) for _ in range(3))
        if std != 1.0:  # 1.0: nn.Embedding's own N(0, 1), drawn as the source draws it
            for table in (self.row, self.col, self.box):
                nn.init.normal_(table.weight, std=std)
        r = torch.arange(81) // 9
        c = torch.arange(81) % 9
        self.register_buffer("ids", torch.stack([r, c, r // 3 * 3 + c // 3]), persistent=False)

    def forward(self) -> torch.Tensor:  # [81, d]
        return self.row(self.ids[0]) + self.col(self.ids[1]) + self.box(self.ids[2])


def transformer(d: int, heads: int, d_ff: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-LN GELU transformer over the 81 cells (batch first)."""
    layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class Encoder(nn.Module):
    """Cells [B, 81, in_ch] → tokens T [B, 81, d] (after a final LayerNorm) and their mean."""

    def __init__(self, cfg: EBMConfig, in_ch: int):
        super().__init__()
        self.input_proj = nn.Linear(in_ch, cfg.d_model)
        self.pos = Positions(cfg.d_model, cfg.pos_std)
        self.blocks = transformer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.norm(self.blocks(self.input_proj(x) + self.pos()))
        return tokens, tokens.mean(1)


class Predictor(nn.Module):
    """Residual MLP [z_ctx; z] → z_pred: small on purpose, so it cannot ignore z (the source)."""

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.d_model + cfg.d_z, cfg.d_pred)
        self.hidden = nn.Linear(cfg.d_pred, cfg.d_pred)
        self.norm = nn.LayerNorm(cfg.d_pred)
        self.out = nn.Linear(cfg.d_pred, cfg.d_model)

    def forward(self, z_ctx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(torch.cat([z_ctx, z], -1)))
        return self.out(self.norm(h + F.gelu(self.hidden(h))))


class Decoder(nn.Module):
    """[z_ctx; z] → 81 cell features (+ a projection of T_ctx with `cell_context`) + positions
    → small transformer → 9 logits per cell; given cells are overwritten with their digit."""

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        self.d_cell = cfg.d_cell
        self.cell_proj = nn.Linear(cfg.d_model + cfg.d_z, 81 * cfg.d_cell)
        self.ctx_proj = nn.Linear(cfg.d_model, cfg.d_cell) if cfg.cell_context else None
        self.pos = Positions(cfg.d_cell, cfg.pos_std)
        self.blocks = transformer(cfg.d_cell, cfg.dec_heads, 4 * cfg.d_cell, cfg.dec_layers, cfg.dropout)
        self.head = nn.Linear(cfg.d_cell, 9)

    def features(self, tokens: torch.Tensor, z_ctx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The transformer's input [B, 81, d_cell] (interp runs the blocks itself)."""
        x = self.cell_proj(torch.cat([z_ctx, z], -1)).view(-1, 81, self.d_cell)
        if self.ctx_proj is not None:
            x = x + self.ctx_proj(tokens)
        return x + self.pos()

    def forward(self, tokens, z_ctx, z, puzzles) -> torch.Tensor:
        return hard_set_givens(self.head(self.blocks(self.features(tokens, z_ctx, z))), puzzles)


def hard_set_givens(logits: torch.Tensor, puzzles: torch.Tensor) -> torch.Tensor:
    """Given cells get logit GIVEN_LOGIT on their digit and 0 elsewhere (no gradient there)."""
    given = givens_mask(puzzles)[..., None]
    onehot = puzzle_onehot(puzzles)[..., 1:].to(logits.dtype)
    return torch.where(given, onehot * GIVEN_LOGIT, logits)


class EBMSudoku(nn.Module):
    """The whole model; see the module docstring. Parts are called separately by the loss,
    Langevin inference and interpretability code, so each has its own method."""

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        self.cfg = cfg
        self.context_encoder = Encoder(cfg, 10)
        self.target_encoder = copy.deepcopy(self.context_encoder)
        if cfg.target_proj == "frozen":
            self.target_encoder.input_proj = nn.Linear(9, cfg.d_model)
        self.target_encoder.requires_grad_(False)
        self.target_encoder.eval()
        self.z_encoder = nn.Linear(cfg.d_model, cfg.d_z)
        self.predictor = Predictor(cfg)
        self.decoder = Decoder(cfg)

    def train(self, mode: bool = True):
        super().train(mode)
        self.target_encoder.eval()
        return self

    def context(self, puzzles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Puzzles [B, 81] (0 = blank) → (T_ctx [B, 81, d], z_ctx [B, d])."""
        return self.context_encoder(puzzle_onehot(puzzles))

    def target(self, probs: torch.Tensor) -> torch.Tensor:
        """Digit distributions [B, 81, 9] (a one-hot solution, or softmax of decoder logits) →
        z_tgt [B, d]. Differentiable in `probs` (Langevin's energy needs that); no parameter
        gradients."""
        if self.cfg.target_proj == "ema":  # a full board: the blank channel is all zero
            probs = F.pad(probs, (1, 0))
        return self.target_encoder(probs)[1]

    def latent(self, z_tgt: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """z = normalize(z_encoder(z_tgt)) (+ z_noise · noise); no normalisation with z_norm off."""
        z = self.z_encoder(z_tgt)
        if self.cfg.z_norm:
            z = F.normalize(z, dim=-1)
        return z if noise is None else z + self.cfg.z_noise * noise

    def predict(self, z_ctx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z_ctx, z)

    def decode(self, tokens, z_ctx, z, puzzles) -> torch.Tensor:
        """Logits [B, 81, 9] (index d−1 = digit d), givens hard-set."""
        return self.decoder(tokens, z_ctx, z, puzzles)

    def forward(self, puzzles: torch.Tensor, solution_probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: the latent is built from the solution (the JEPA objective needs it);
        never use it to score a solver — see langevin.py for the modes that do."""
        tokens, z_ctx = self.context(puzzles)
        with torch.no_grad():
            z_tgt = self.target(solution_probs)
        z = self.latent(z_tgt, torch.randn(len(z_tgt), self.cfg.d_z, device=z_tgt.device))
        return {
            "z_ctx": z_ctx,
            "z_tgt": z_tgt,
            "z": z,
            "z_pred": self.predict(z_ctx, z),
            "logits": self.decode(tokens, z_ctx, z, puzzles),
        }

    def momentum(self, step: int, steps: int) -> float:
        """EMA momentum: 0.996 at step 0 rising linearly to 1 at the last step (steps − 1)."""
        return 0.996 + (1 - 0.996) * min(1.0, step / max(1, steps - 1))

    @torch.no_grad()
    def ema_update(self, step: int, steps: int) -> float:
        """target ← m·target + (1 − m)·context, m = momentum(step, steps); returns m. With
        target_proj "frozen" the target's 9-channel input weight is skipped (shapes differ) while
        its bias, of the same shape, is averaged — exactly what the source does."""
        m = self.momentum(step, steps)
        for (name, t), c in zip(self.target_encoder.named_parameters(), self.context_encoder.parameters(), strict=True):
            if t.shape == c.shape:
                t.lerp_(c, 1 - m)
            elif not name.startswith("input_proj"):
                raise RuntimeError(f"target encoder parameter {name} does not match the context encoder")
        return m


def n_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
