"""Set recall: a synthetic LM task where set-level overlap IS the signal (SKA's positive control).

In the text studies the learned SKA gate stays near its init and switching the branch off
barely moves perplexity, which cannot tell "set attention does not help here" from "set
attention cannot learn". Here it must help, by construction. A sequence is a run of windows
of ``set_size`` distinct atoms (token ids, uniform over ``n_atoms``):

    K_0 … K_{M-1}  (Q_1 T_1) … (Q_R T_R)

- memory windows K_i: fresh random atoms, no atom in two of them;
- query window Q_r: ``overlap`` atoms of one memory window K_j (its source), ``decoy_overlap``
  (< overlap) atoms of a memory window no query copies (a decoy: some overlap is not enough,
  the MOST overlap is what counts), the rest fresh atoms seen nowhere else;
- copy window T_r: a random permutation of K_j — the earlier window that shares the most
  atoms with Q_r (unique by construction; ``max_overlap_source`` checks it by brute force).

The sources K_j end at least two windows before their query starts, beyond the reach of two
width-``set_size`` causal convs, and each is recalled once. The atoms of T_r that Q_r lacks
(the *recall* tokens) can only come from K_j: local context cannot predict them, a lookup of
the max-overlap earlier window can (``oracle_predictions``). Their permutation makes the
order unpredictable, so the scores are set-level: NLL, and whether the top guess is one of the
recall atoms not yet emitted in the window. Everything is drawn from a numpy generator seeded
by (data_seed, split), so each split is a function of the seed and the splits are disjoint
streams (the data stage also checks no sequence repeats across splits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SetRecallConfig:
    n_atoms: int = 512  # vocabulary: atom ids 0 .. n_atoms - 1
    set_size: int = 8  # atoms per window (= the bank's window and stride, so sets are windows)
    n_memory: int = 8  # memory windows before the first query
    n_queries: int = 4  # (query, copy) window pairs after the memory
    overlap: int = 4  # atoms a query shares with its source
    decoy_overlap: int = 2  # atoms it shares with a decoy memory window (< overlap)

    def __post_init__(self):
        w, m, d = self.set_size, self.overlap, self.decoy_overlap
        for name in ("n_atoms", "set_size", "n_memory", "n_queries", "overlap"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SetRecallConfig.{name}={getattr(self, name)!r}: need int >= 1")
        if not 0 <= d < m <= w:
            raise ValueError(f"SetRecallConfig: need 0 <= decoy_overlap ({d}) < overlap ({m}) <= set_size ({w})")
        if self.n_queries > self.n_memory - 2:
            raise ValueError(
                f"SetRecallConfig.n_queries={self.n_queries}: at most n_memory - 2 = {self.n_memory - 2} "
                "(distinct sources, each two windows clear of its query)"
            )
        if self.atoms_per_sequence > self.n_atoms:
            raise ValueError(
                f"SetRecallConfig.n_atoms={self.n_atoms}: a sequence needs {self.atoms_per_sequence} distinct atoms"
            )

    @property
    def n_windows(self) -> int:
        return self.n_memory + 2 * self.n_queries

    @property
    def length(self) -> int:
        """Tokens per sequence; the model reads length - 1 and predicts the next token."""
        return self.n_windows * self.set_size

    @property
    def atoms_per_sequence(self) -> int:
        return self.n_memory * self.set_size + self.n_queries * (self.set_size - self.overlap - self.decoy_overlap)


def _sequence(cfg: SetRecallConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One sequence [n_windows, w] and, per query r, its source window index."""
    w, M = cfg.set_size, cfg.n_memory
    atoms = rng.choice(cfg.n_atoms, size=cfg.atoms_per_sequence, replace=False)
    memory, fresh = atoms[: M * w].reshape(M, w), iter(atoms[M * w :])
    # source of query r: a memory window ending two or more windows before Q_r starts, never reused
    sources = rng.choice(M - 2, size=cfg.n_queries, replace=False)
    windows, n_fresh = list(memory), w - cfg.overlap - cfg.decoy_overlap
    for j in sources:
        decoy = rng.choice([i for i in range(M) if i not in sources])  # never a source: no ties
        query = np.concatenate(
            [
                rng.choice(memory[j], cfg.overlap, replace=False),
                rng.choice(memory[decoy], cfg.decoy_overlap, replace=False),
                [next(fresh) for _ in range(n_fresh)],
            ]
        )
        windows += [rng.permutation(query), rng.permutation(memory[j])]
    return np.stack(windows), sources


def generate(cfg: SetRecallConfig, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n sequences → (tokens [n, length] int64, sources [n, n_queries] int64), seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    seqs, sources = zip(*(_sequence(cfg, rng) for _ in range(n)), strict=True)
    tokens = torch.from_numpy(np.stack(seqs).reshape(n, cfg.length).astype(np.int64))
    return tokens, torch.from_numpy(np.stack(sources).astype(np.int64))


def split_seed(data_seed: int, split: str) -> int:
    """The generator seed of a split: a distinct stream per (data_seed, split)."""
    return int(np.random.SeedSequence([data_seed, SPLITS.index(split)]).generate_state(1)[0])


def query_windows(cfg: SetRecallConfig) -> list[tuple[int, int]]:
    """(query window index, copy window index) of every query, in order."""
    return [(cfg.n_memory + 2 * r, cfg.n_memory + 2 * r + 1) for r in range(cfg.n_queries)]


def max_overlap_source(cfg: SetRecallConfig, tokens: Tensor, query: int) -> tuple[int, int]:
    """Brute force: (index of the earlier window sharing the most atoms with window ``query``,
    the runner-up's overlap). Ties are reported as a runner-up equal to the best."""
    w = tokens.view(cfg.n_windows, cfg.set_size).tolist()
    q = set(w[query])
    overlaps = sorted(((len(q & set(w[i])), i) for i in range(query)), reverse=True)
    return overlaps[0][1], overlaps[1][0]


def _copy_positions(cfg: SetRecallConfig):
    """Per copy window: (query index, copy index, target positions of its w tokens)."""
    w = cfg.set_size
    return [(q, c, [c * w + i - 1 for i in range(w)]) for q, c in query_windows(cfg)]  # target t = token t + 1


def position_masks(cfg: SetRecallConfig, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Over the model's L = length - 1 target positions: ``copy`` [N, L] (the target is in a
    copy window) and ``recall`` [N, L] (...and its query window lacks it: only the lookup of the
    max-overlap earlier window can predict it)."""
    N, w = tokens.shape[0], cfg.set_size
    win = tokens.view(N, cfg.n_windows, w)
    copy = torch.zeros(N, cfg.length - 1, dtype=torch.bool)
    recall = torch.zeros_like(copy)
    for q, c, ts in _copy_positions(cfg):
        copy[:, ts] = True
        recall[:, ts] = ~(win[:, c, :, None] == win[:, q, None, :]).any(-1)
    return copy, recall


def remaining(cfg: SetRecallConfig, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """At each target position of a copy window: ``n_left`` [N, L] the atoms of the window not
    yet emitted (the target among them: an oracle that knows the window spreads its mass over
    these), and ``recall_left`` [N, L, w] the not-yet-emitted atoms its query lacks (-1 pads):
    a right top guess at a recall position is one of them."""
    N, w = tokens.shape[0], cfg.set_size
    win = tokens.view(N, cfg.n_windows, w)
    n_left = torch.zeros(N, cfg.length - 1, dtype=torch.long)
    recall_left = torch.full((N, cfg.length - 1, w), -1, dtype=torch.long)
    for q, c, ts in _copy_positions(cfg):
        lacks = ~(win[:, c, :, None] == win[:, q, None, :]).any(-1)  # [N, w]
        for i, t in enumerate(ts):
            n_left[:, t] = w - i
            recall_left[:, t, i:] = torch.where(lacks[:, i:], win[:, c, i:], -1)
    return n_left, recall_left


@torch.no_grad()
def recall_scores(cfg: SetRecallConfig, tokens: Tensor, log_probs: Tensor) -> dict[str, Tensor]:
    """Summed scores of predictions ``log_probs`` [N, L, n_atoms] (log-softmax, position t
    predicting token t + 1): copy_nll, recall_nll, recall_hits and the counts n_copy, n_recall.
    A recall hit: the top guess is a recall atom of the window not yet emitted."""
    copy, recall = position_masks(cfg, tokens)
    _, recall_left = remaining(cfg, tokens)
    nll = -log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)  # [N, L]
    hit = (log_probs.argmax(-1, keepdim=True) == recall_left).any(-1)  # [N, L]
    return {
        "copy_nll": nll[copy].sum(),
        "recall_nll": nll[recall].sum(),
        "recall_hits": (hit & recall).sum(),
        "n_copy": copy.sum(),
        "n_recall": recall.sum(),
    }


def oracle_log_probs(cfg: SetRecallConfig, tokens: Tensor, tie_break: float = 1e-6) -> Tensor:
    """[N, L, n_atoms]: at copy positions, (almost) uniform over the not-yet-emitted atoms of
    the window ``max_overlap_source`` finds for the query (looked up, never read from the
    generator's record); elsewhere uniform over all atoms. Atoms the query lacks get
    ``tie_break`` more logit, so the top guess is a recall atom whenever one is left. What a
    perfect set-recall model reaches."""
    N, w = tokens.shape[0], cfg.set_size
    logits = torch.zeros(N, cfg.length - 1, cfg.n_atoms, dtype=torch.float64)
    win = tokens.view(N, cfg.n_windows, w)
    for q, c, ts in _copy_positions(cfg):
        for n in range(N):
            src = set(win[n, max_overlap_source(cfg, tokens[n], q)[0]].tolist())
            lacks = sorted(src - set(win[n, q].tolist()))
            for i, t in enumerate(ts):
                logits[n, t] = -float("inf")
                logits[n, t, sorted(src - set(win[n, c, :i].tolist()))] = 0.0
                logits[n, t, lacks] += tie_break
    return torch.log_softmax(logits, -1)


def floors(cfg: SetRecallConfig, tokens: Tensor) -> dict[str, float]:
    """Reference values on ``tokens``: the oracle's recall NLL (uniform over the window's atoms
    not yet emitted), chance NLL (uniform over atoms) and chance recall accuracy."""
    _, recall = position_masks(cfg, tokens)
    n_left, recall_left = remaining(cfg, tokens)
    return {
        "recall_nll_oracle": float(n_left[recall].float().log().mean()),
        "recall_nll_chance": float(np.log(cfg.n_atoms)),
        "chance": float((recall_left[recall] >= 0).sum(-1).float().mean() / cfg.n_atoms),
    }


def lm_data(tokens: Tensor, window: int, stride: int, minhash_k: int, hash_seed: int, n_atoms: int, with_bank: bool):
    """LMData of sequences ``tokens`` [N, length]: inputs = tokens[:, :-1], targets =
    tokens[:, 1:], and (SKA) the bank built over exactly the inputs."""
    from .banks import add_signatures, build_bank
    from .train import LMData

    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    bank = add_signatures(build_bank(inputs, window, stride), minhash_k, hash_seed, n_atoms) if with_bank else None
    return LMData(inputs, targets, bank)


@torch.no_grad()
def evaluate_recall(model, cfg: SetRecallConfig, tokens: Tensor, data, batch_size: int) -> dict[str, float]:
    """loss (mean NLL over every position), copy_nll, recall_nll, recall_acc of ``model`` on the
    sequences ``tokens`` (``data`` = their ``lm_data``). The model runs on its device; the
    scores are summed on the CPU, where ``tokens`` are."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    sums: dict[str, float] = {}
    for lo in range(0, len(data), batch_size):
        idx = torch.arange(lo, min(lo + batch_size, len(data)))
        x, y, bank = data.batch(idx, device)
        log_probs = torch.log_softmax(model(x, bank).float(), -1).cpu()
        scores = recall_scores(cfg, tokens[idx], log_probs)
        scores["nll"] = -log_probs.gather(-1, y.cpu()[..., None]).sum()
        scores["n"] = torch.tensor(y.numel())
        sums = {k: sums.get(k, 0.0) + float(v) for k, v in scores.items()}
    model.train(was_training)
    return {
        "loss": sums["nll"] / sums["n"],
        "copy_nll": sums["copy_nll"] / sums["n_copy"],
        "recall_nll": sums["recall_nll"] / sums["n_recall"],
        "recall_acc": sums["recall_hits"] / sums["n_recall"],
    }
