"""Training the translator between two frozen LMs, with the stability fixes as one switch.

Loss: B's cross-entropy on the answer tokens given [soft ‖ anchor] (teacher forced). With
`stability` (docs/studies.md, the bridge section; one switch, as in the source's plan):
  - InfoNCE between the mean soft token and the mean of B's embeddings of the question
    (τ 0.07, in-batch negatives, symmetric), weight λ 0.05 from 50 % of warm-up on;
  - early stopping on VALIDATION bridged accuracy (patience 5 evaluations), best state restored;
  - decoding hygiene for every evaluation: repetition penalty 1.1, no-repeat 3-grams.
Without it: plain CE, the last state is kept, plain greedy decoding — the source's baseline,
which is what "collapse" (peak − final) is measured on.

B's question embeddings enter only the training loss, never B's evaluation input. `val_fn`
must score the validation split: selection never sees test.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from studies.bridge.bridged import Bridge, Decoding, Example, pad_right
from studies.train_loop import lr_at


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 50
    max_new: int = 16
    stability: bool = False
    info_nce_weight: float = 0.05
    info_nce_tau: float = 0.07
    info_nce_start: float = 0.5  # fraction of warm-up after which InfoNCE is on
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 0


@dataclass
class TrainResult:
    """`peak`: best validation accuracy seen; `last`: at the last evaluation; `final`: of the state
    returned (the restored best with stability, else the last); `degradation` = peak − final."""

    history: list[dict] = field(default_factory=list)  # per evaluation: step, train_loss, val_acc
    losses: list[float] = field(default_factory=list)  # per step
    times: list[float] = field(default_factory=list)  # per step: seconds since training began, at its end
    peak: float = 0.0
    last: float = 0.0
    final: float = 0.0
    degradation: float = 0.0
    best_step: int = -1
    stopped_step: int = -1


def decoding_for(cfg: TrainConfig) -> Decoding:
    """Plain greedy decoding, or with the stability switch the source's hygiene (1.1, 3-grams)."""
    if cfg.stability:
        return Decoding(cfg.max_new, repetition_penalty=1.1, no_repeat_ngram=3)
    return Decoding(cfg.max_new)


def info_nce_weight(step: int, cfg: TrainConfig) -> float:
    """λ from step ≥ info_nce_start · warm-up when the stability switch is on, else 0."""
    return cfg.info_nce_weight if cfg.stability and step >= cfg.info_nce_start * cfg.warmup else 0.0


def info_nce(soft_pooled: torch.Tensor, text_pooled: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE on cosine similarity / τ: row i of each side is the other's positive."""
    logits = F.normalize(soft_pooled, dim=-1) @ F.normalize(text_pooled, dim=-1).T / tau
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _question_embedding(bridge: Bridge, batch: Sequence[Example]) -> torch.Tensor:
    device = bridge.lm_b.embed.weight.device
    ids, mask = (t.to(device) for t in pad_right([e.b_question for e in batch]))
    emb = bridge.lm_b.embed(ids) * mask[..., None]
    return emb.sum(1) / mask.sum(1, keepdim=True)


class StateCache:
    """A's states of every training example, computed once: A is frozen and in eval mode, so an
    example's states never change, and A's forward is most of a step's cost (a 2-layer char LM
    over ~200 positions: ~3/4 of the step measured on the CPU). Kept unpadded per example; a
    batch is right-padded exactly as :meth:`Bridge.a_states` pads it."""

    def __init__(self, bridge: Bridge, examples: Sequence[Example], chunk: int = 64):
        self.states: list[torch.Tensor] = []
        with torch.no_grad():
            for i in range(0, len(examples), chunk):
                hidden, mask = bridge.a_states(examples[i : i + chunk])
                self.states += [h[m] for h, m in zip(hidden, mask, strict=True)]

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.states[i] for i in idx]
        hidden = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        lengths = torch.tensor([len(r) for r in rows], device=hidden.device)
        return hidden, torch.arange(hidden.shape[1], device=hidden.device) < lengths[:, None]


def _freeze(lm: nn.Module) -> None:
    lm.eval()
    lm.requires_grad_(False)


def train_translator(
    bridge: Bridge,
    train_examples: Sequence[Example],
    val_fn: Callable[[Decoding], float],
    cfg: TrainConfig,
) -> TrainResult:
    """Train `bridge.translator` (A and B frozen); `val_fn(decoding)` returns validation bridged
    accuracy of the current translator. Evaluates every `eval_every` steps and after the last."""
    _freeze(bridge.lm_a)
    _freeze(bridge.lm_b)
    translator = bridge.translator
    if cfg.eval_every < 1 or cfg.steps < 1:
        raise ValueError(f"TrainConfig: steps ({cfg.steps}) and eval_every ({cfg.eval_every}) must be >= 1")
    if cfg.stability and cfg.batch_size < 2:
        raise ValueError(f"stability needs batch_size >= 2 for InfoNCE negatives, got {cfg.batch_size}")
    decoding = decoding_for(cfg)
    opt = torch.optim.AdamW(translator.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult()
    best_state, bad_evals, window = None, 0, []
    order: list[int] = []
    cache = StateCache(bridge, train_examples)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        translator.train()
        idx = []
        while len(idx) < cfg.batch_size:
            if not order:
                order = torch.randperm(len(train_examples), generator=gen).tolist()
            idx.append(order.pop())
        batch = [train_examples[i] for i in idx]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        soft = bridge.soft(batch, cache.batch(idx))
        loss = bridge.teacher_forced_loss(soft, batch)
        lam = info_nce_weight(step, cfg)
        if lam:
            loss = loss + lam * info_nce(soft.mean(1), _question_embedding(bridge, batch), cfg.info_nce_tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(translator.parameters(), cfg.grad_clip)
        opt.step()
        result.losses.append(loss.item())
        result.times.append(time.perf_counter() - t0)
        window.append(loss.item())
        if (step + 1) % cfg.eval_every and step + 1 != cfg.steps:
            continue
        translator.eval()
        acc = float(val_fn(decoding))
        result.history.append({"step": step + 1, "train_loss": sum(window) / len(window), "val_acc": acc})
        window = []
        if acc > result.peak or best_state is None:
            result.peak, result.best_step, bad_evals = acc, step + 1, 0
            best_state = copy.deepcopy(translator.state_dict())
        else:
            bad_evals += 1
        if cfg.stability and bad_evals >= cfg.patience:
            break
    translator.eval()
    result.stopped_step = len(result.losses)
    result.last = result.history[-1]["val_acc"]
    if cfg.stability:
        translator.load_state_dict(best_state)
        result.final = result.peak
    else:
        result.final = result.last
    result.degradation = result.peak - result.final
    return result
