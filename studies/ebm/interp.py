"""Interpretability tools for a trained model (docs/studies.md (energy-based solver), the log's five experiments).

- `lock_in_steps`: the first step from which a cell's probability on a digit stays > 0.9.
- `placement_strategies`: which human strategy explains each cell that becomes filled between
  two consecutive boards. Candidates are 9-bit masks; each elimination rule is a vectorised
  numpy function of a candidate grid, and the cascade asks, level by level, whether the placed
  digit is a naked or hidden single once that level's eliminations (and the easier ones) apply.
- `attention_maps` / `head_specialisation`: per decoder head, the mean attention a cell pays
  to the other cells of its row, column and box, over the uniform mean (1/81).
- `ablate_head`: zero one head's columns of its layer's out-projection (its contribution to
  the layer's output and nothing else), restored on exit.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from studies.data.sudoku import UNITS
from studies.ebm.grid import CELL_UNITS, candidates, popcount
from studies.ebm.langevin import langevin
from studies.ebm.metrics import blank_accuracy

# ---------------------------------------------------------------------------- lock-in


def lock_in_steps(probs, digits, threshold: float = 0.9) -> np.ndarray:
    """probs [T+1, B, 81, 9] (a recorded trajectory), digits [B, 81] 1-9 (the solution: the
    source's "commits to its final correct digit"; or the final board) → [B, 81] the first
    step t with p(digit) > threshold at every step from t on; −1 where it never holds at the end."""
    p = np.asarray(probs)
    idx = np.asarray(digits).astype(np.int64)[None, ..., None] - 1
    above = np.take_along_axis(p, np.broadcast_to(idx, p.shape[:-1] + (1,)), -1)[..., 0] > threshold
    sustained = np.flip(np.logical_and.accumulate(np.flip(above, 0), 0), 0)  # above from t to the end
    return np.where(sustained[-1], sustained.argmax(0), -1)


def locked_boards(probs, threshold: float = 0.9) -> np.ndarray:
    """[T+1, B, 81, 9] → [T+1, B, 81] boards holding a cell's argmax digit where its probability
    exceeds `threshold`, else blank (0): the board of committed cells at each step."""
    p = np.asarray(probs)
    return np.where(p.max(-1) > threshold, p.argmax(-1) + 1, 0)


# ---------------------------------------------------------------------------- strategies

STRATEGIES = ("naked_single", "hidden_single", "pointing", "box_line", "naked_pair", "x_wing", "unknown")


def _intersections():
    """Box ∩ line (27 box-row + 27 box-column) cells, the rest of the box, the rest of the line."""
    inter, box_rest, line_rest = [], [], []
    for b in range(9):
        box = set(UNITS[18 + b])
        for line in list(UNITS[:18]):
            common = box & set(line)
            if common:
                inter.append(sorted(common))
                box_rest.append(sorted(box - common))
                line_rest.append(sorted(set(line) - common))
    return np.array(inter), np.array(box_rest), np.array(line_rest)


INTER, BOX_REST, LINE_REST = _intersections()  # [54, 3], [54, 6], [54, 6]


def _or_over(cand: np.ndarray, cells: np.ndarray) -> np.ndarray:
    return np.bitwise_or.reduce(cand[:, cells], axis=-1)


def _scatter_or(n: int, cells: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """[n, 81] masks: OR of bits [n, G] (one mask per group) or [n, G, k] (one per member) into
    the cells [G, k] of each group g."""
    out = np.zeros((n, 81), np.int32)
    rows = np.arange(n)[:, None, None]
    vals = bits if bits.ndim == 3 else bits[..., None]
    np.bitwise_or.at(out, (rows, cells[None]), np.broadcast_to(vals, (n,) + cells.shape).astype(np.int32))
    return out


def eliminate_pointing(cand: np.ndarray) -> np.ndarray:
    """Pointing pairs/triples: a digit confined, within a box, to one row (column) leaves the
    rest of that row (column)."""
    confined = _or_over(cand, INTER) & ~_or_over(cand, BOX_REST)
    return cand & ~_scatter_or(len(cand), LINE_REST, confined)


def eliminate_box_line(cand: np.ndarray) -> np.ndarray:
    """Box/line reduction: a digit confined, within a row (column), to one box leaves the rest
    of that box."""
    confined = _or_over(cand, INTER) & ~_or_over(cand, LINE_REST)
    return cand & ~_scatter_or(len(cand), BOX_REST, confined)


def eliminate_naked_pairs(cand: np.ndarray) -> np.ndarray:
    """Two cells of a unit with the same two candidates: those digits leave the unit's others."""
    cu = cand[:, UNITS]  # [n, 27, 9]
    two = popcount(cu) == 2
    same = (cu[..., :, None] == cu[..., None, :]) & two[..., :, None] & two[..., None, :] & ~np.eye(9, dtype=bool)
    paired = same.any(-1)  # [n, 27, 9] cell i has a partner
    hits = paired[..., :, None] & (cu[..., :, None] != cu[..., None, :])  # i's pair digits leave j
    elim_u = np.bitwise_or.reduce(np.where(hits, cu[..., :, None], 0), axis=-2)  # [n, 27, 9]
    return cand & ~_scatter_or(len(cand), UNITS, elim_u)


_PAIRS = np.array([(a, b) for a in range(9) for b in range(a + 1, 9)])  # 36 line pairs
_OUTSIDE = np.ones((36, 9), bool)
_OUTSIDE[np.arange(36), _PAIRS[:, 0]] = False
_OUTSIDE[np.arange(36), _PAIRS[:, 1]] = False


def _x_wing_rows(cand: np.ndarray) -> np.ndarray:
    """Row-based X-wing: a digit with exactly two candidate columns in each of two rows, the
    same two, leaves those columns in every other row."""
    grid = cand.reshape(-1, 9, 9)  # [n, row, col]
    has = (grid[:, None] >> np.arange(9)[None, :, None, None]) & 1  # [n, digit, row, col]
    colmask = (has << np.arange(9)).sum(-1)  # [n, digit, row] columns holding the digit, as bits
    a, b = colmask[..., _PAIRS[:, 0]], colmask[..., _PAIRS[:, 1]]  # [n, digit, 36]
    wing = (a == b) & (popcount(a) == 2)
    cols = ((a[..., None] >> np.arange(9)) & 1).astype(bool)  # [n, digit, 36, col]
    hit = wing[..., None, None] & _OUTSIDE[None, None, :, :, None] & cols[..., None, :]  # [n, d, 36, row, col]
    elim = hit.any(2)  # [n, digit, row, col]
    bits = (elim << np.arange(9)[None, :, None, None]).sum(1)  # [n, row, col]
    return cand & ~bits.reshape(-1, 81).astype(np.int32)


def eliminate_x_wing(cand: np.ndarray) -> np.ndarray:
    """X-wings on rows, then on columns (the same rule on the transposed grid)."""
    cand = _x_wing_rows(cand)
    t = cand.reshape(-1, 9, 9).transpose(0, 2, 1).reshape(-1, 81)
    return _x_wing_rows(t).reshape(-1, 9, 9).transpose(0, 2, 1).reshape(-1, 81)


def singles(cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(naked [n, 81], hidden [n, 81]) masks: the digit a cell is forced to as its only
    candidate, and the digits for which it is the only place left in one of its units."""
    naked = np.where(popcount(cand) == 1, cand, 0)
    cu = cand[:, UNITS]
    count = ((cu[..., None] >> np.arange(9)) & 1).sum(-2)  # [n, 27, digit]
    once = (count == 1) << np.arange(9)  # bits of digits with one place in the unit
    once_bits = np.bitwise_or.reduce(once, axis=-1)  # [n, 27]
    hidden = cand & np.bitwise_or.reduce(once_bits[:, CELL_UNITS], axis=-1)
    return naked, hidden


ELIMINATIONS = (eliminate_pointing, eliminate_box_line, eliminate_naked_pairs, eliminate_x_wing)  # STRATEGIES[2:6]


def strategy_codes(cand: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Candidates [n, 81] and the digit placed in each cell [n, 81] (0 = none) → [n, 81] index in
    STRATEGIES of the easiest level at which that digit is forced: a naked single (0), a hidden
    single (1), or either after applying the eliminations up to levels 2-5 cumulatively;
    "unknown" if none forces it; −1 where nothing was placed."""
    p = np.asarray(placed).astype(np.int64)
    bit = np.where(p > 0, 1 << np.clip(p - 1, 0, 8), 0)
    naked, hidden = singles(cand)
    hits = [naked & bit, hidden & bit]
    for rule in ELIMINATIONS:
        cand = rule(cand)
        naked, hidden = singles(cand)
        hits.append((naked | hidden) & bit)
    out = np.where(p > 0, len(STRATEGIES) - 1, -1)
    undecided = p > 0
    for code, hit in enumerate(hits):
        out = np.where(undecided & (hit > 0), code, out)
        undecided &= hit == 0
    return out


def placement_strategies(before, after) -> np.ndarray:
    """Boards [n, 81] (0 = blank) at consecutive steps → strategy_codes of each cell blank in
    `before` and filled in `after`, with candidates from `before`'s placed digits."""
    b, a = np.asarray(before).astype(np.int64), np.asarray(after).astype(np.int64)
    return strategy_codes(candidates(b), np.where((b == 0) & (a > 0), a, 0))


def trajectory_strategies(probs, threshold: float = 0.9) -> np.ndarray:
    """A recorded trajectory [T+1, B, 81, 9] → [T, B, 81] strategy codes of the cell events
    between steps t and t+1 of the committed boards (`locked_boards`): a cell newly committed,
    or committed to a different digit (classified as if it were blank before); −1 elsewhere."""
    boards = locked_boards(probs, threshold)
    before, after = boards[:-1], boards[1:]
    before = np.where((after > 0) & (before > 0) & (after != before), 0, before)
    shape = after.shape
    return placement_strategies(before.reshape(-1, 81), after.reshape(-1, 81)).reshape(shape)


# ---------------------------------------------------------------------------- attention


@torch.no_grad()
def attention_maps(model, puzzles: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Decoder self-attention [layers, B, heads, 81 (query), 81 (key)] at latent z, recomputed
    layer by layer from each layer's own pre-norm input (eval mode, so no dropout)."""
    model.eval()
    tokens, z_ctx = model.context(puzzles)
    x = model.decoder.features(tokens, z_ctx, z)
    maps = []
    for layer in model.decoder.blocks.layers:
        h = layer.norm1(x)
        maps.append(layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)[1])
        x = layer(x)
    return torch.stack(maps)


def _same_unit(kind: int) -> np.ndarray:
    """[81, 81] True where two different cells share a row (0), column (1) or box (2)."""
    m = np.zeros((81, 81), bool)
    for u in UNITS[kind * 9 : kind * 9 + 9]:
        m[np.ix_(u, u)] = True
    np.fill_diagonal(m, False)
    return m


SAME = np.stack([_same_unit(k) for k in range(3)])  # [3, 81, 81]
UNIT_NAMES = ("row", "col", "box")


def head_specialisation(maps, threshold: float = 1.2, include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """maps [layers, B, heads, 81, 81] → (ratios [layers, heads, 3], labels [layers, heads]):
    mean attention to the other cells of the query's row / column / box over the mean attention
    to any cell (1/81); a head is labelled by its largest ratio if it exceeds `threshold`, else
    "mixed". The source counts the query itself as in its own groups (`include_self=True`),
    which lifts all three ratios of a head that attends to itself."""
    a = np.asarray(maps).mean(1)  # [layers, heads, 81, 81]
    same = SAME | np.eye(81, dtype=bool) if include_self else SAME
    within = np.einsum("lhqk,uqk->lhu", a, same) / same.sum((1, 2))  # mean weight on same-unit pairs
    ratios = within / a.mean((-2, -1))[..., None]
    best = ratios.argmax(-1)
    labels = np.where(ratios.max(-1) > threshold, np.array(UNIT_NAMES)[best], "mixed")
    return ratios, labels


@contextmanager
def ablate_head(model, layer: int, head: int):
    """Zero decoder layer `layer`'s out-projection columns of head `head`, restore on exit."""
    attn = model.decoder.blocks.layers[layer].self_attn
    if not 0 <= head < attn.num_heads:
        raise ValueError(f"head={head} out of range: layer {layer} has {attn.num_heads} heads")
    cols = slice(head * attn.head_dim, (head + 1) * attn.head_dim)
    saved = attn.out_proj.weight[:, cols].clone()
    with torch.no_grad():
        attn.out_proj.weight[:, cols] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            attn.out_proj.weight[:, cols] = saved


def head_ablation_effects(model, puzzles, solutions, chains: int = 4, steps: int = 20, seed: int = 0) -> np.ndarray:
    """[layers, heads] change in Langevin blank-cell accuracy when each decoder head is ablated
    alone. Both sides start from the same z₀ and noise (a generator reseeded with `seed`), so
    a difference is the head's doing, not the sampler's. `solutions` only score the boards."""

    def accuracy():
        boards = langevin(model, puzzles, chains, steps, generator=torch.Generator().manual_seed(seed)).boards
        return blank_accuracy(boards.cpu().numpy(), np.asarray(solutions), puzzles.cpu().numpy())

    base = accuracy()
    layers = model.decoder.blocks.layers
    out = np.zeros((len(layers), layers[0].self_attn.num_heads))
    for li in range(out.shape[0]):
        for h in range(out.shape[1]):
            with ablate_head(model, li, h):
                out[li, h] = accuracy() - base
    return out
