"""Standard post-norm transformer encoder: the baseline the PoH models are compared with.

A plain encoder (Vaswani et al. 2017, post-norm) applied once: no recurrence, no
controller, every head weighted 1. It is built from the same ``PoHBlock`` as the PoH models
with α = None, so the attention, FFN and norm code are shared and the comparison differs
only in routing and recurrence.

- ``TransformerEncoder``: n_layers blocks; ``norm``/``ffn`` select RMSNorm+SwiGLU (the HRM
  block, used for Sudoku) or LayerNorm+GELU MLP (the standard encoder, used for mazes).
- ``SudokuBaseline``: the Sudoku solver's embedding (√d·(E_tok + P + E_puzzle)) and head
  (W_o·RMSNorm) around the encoder; returns the same ``SudokuOutput`` as ``HybridHRM``
  (``alpha`` empty, ``entropy`` None).
"""

from dataclasses import dataclass

from torch import Tensor, nn

from studies.poh.config import check_min
from studies.poh.hrm import SudokuEmbedding, SudokuOutput
from studies.poh.layers import PoHBlock


class TransformerEncoder(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        norm: str = "rms",
        ffn: str = "swiglu",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            PoHBlock(d_model, n_heads, d_ff, norm, ffn, dropout=dropout) for _ in range(n_layers)
        )

    def forward(self, x: Tensor) -> Tensor:  # x: [B, S, D]
        for block in self.blocks:
            x = block(x)  # alpha=None: ordinary multi-head attention
        return x


@dataclass(frozen=True)
class SudokuBaselineConfig:
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_layers: int = 6  # the source's Sudoku baseline depth
    vocab: int = 10
    seq_len: int = 81
    num_puzzles: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "seq_len", "num_puzzles"):
            check_min("SudokuBaselineConfig", name, getattr(self, name), 1)
        check_min("SudokuBaselineConfig", "vocab", self.vocab, 2)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"SudokuBaselineConfig.d_model={self.d_model} must be a multiple of n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SudokuBaselineConfig.dropout={self.dropout!r} must be in [0, 1)")


class SudokuBaseline(nn.Module):
    def __init__(self, cfg: SudokuBaselineConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = SudokuEmbedding(cfg.vocab, d, cfg.seq_len, cfg.num_puzzles)
        self.encoder = TransformerEncoder(d, cfg.n_heads, cfg.d_ff, cfg.n_layers, "rms", "swiglu", cfg.dropout)
        self.final_norm = nn.RMSNorm(d, eps=1e-6)
        self.out = nn.Linear(d, cfg.vocab)

    def forward(self, inputs: Tensor, puzzle_ids: Tensor | None = None) -> SudokuOutput:
        h = self.encoder(self.embed(inputs, puzzle_ids))  # [B, 81, D]
        return SudokuOutput(logits=self.out(self.final_norm(h)))  # [B, 81, vocab]
