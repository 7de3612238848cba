"""One training loop for the study families: AdamW, warm-up + cosine to a floor, clipping,
seeded batches, periodic evaluation, and keeping the best state on a target metric.

Why shared: the PoH Sudoku and maze studies (and any later family) train the same way and
differ only in how a batch is built and scored, so the task modules pass two callables:

    make_batch(idx: np.ndarray, rng: np.random.Generator) -> batch    (augmentation uses rng)
    loss_fn(model, batch, step: int) -> (loss: Tensor, logs: dict[str, float])
    evaluate(model) -> dict[str, float]                               (optional)

Seeding: ``seed`` fixes torch's global RNG (dropout), and two numpy generators spawned from
it — one for batch order (shuffled epochs, ragged tail dropped), one handed to ``make_batch``
— so a seed fixes the run and changing augmentation does not change batch order. The caller
seeds model initialisation itself (before building the model).

Checkpointing: after each evaluation the state is kept in memory when ``target`` improves
(strictly; a list of metric names compares lexicographically, e.g. grid then cell accuracy,
which breaks the ties of a metric that sits at 0 early on). With ``restore_best`` the best
state is loaded back at the end; ``history["eval"]`` keeps every evaluation, so the final
(last-step) numbers are never lost.

Progress: a tqdm bar on a terminal; in a log file (stderr not a TTY, as under snakemake or dvc) a
plain line every few steps instead of carriage-return frames (``studies.progress``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from .progress import progress_bar


def lr_at(step: int, steps: int, lr: float, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps`` (step 0 gets lr/warmup), then cosine
    from ``lr`` at the first post-warm-up step to ``min_ratio·lr`` at the last step.

    The SKA trainers use it at ``min_ratio`` 0.1."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps - 1)
    floor = lr * min_ratio
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def anneal_linear(weight: float, step: int, steps: int) -> float:
    """``weight`` decayed linearly to exactly 0 at the last step (step = steps − 1)."""
    return weight * max(0.0, 1.0 - step / max(1, steps - 1))


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    warmup_frac: float = 0.1  # warm-up steps = round(warmup_frac · steps)
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    decay_all: bool = False  # weight-decay vectors (biases, norms) too, as the sources did
    eval_every: int = 0  # evaluate every this many steps; the last step always; 0 = last only
    target: tuple[str, ...] | str = ()  # metric(s) that pick the kept state; () = keep last
    target_mode: str = "max"  # max | min
    restore_best: bool = True
    seed: int = 0

    def __post_init__(self):
        own = "LoopConfig"
        for name, lo in (("steps", 1), ("batch_size", 1), ("eval_every", 0), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{own}.{name}={v!r} must be an int >= {lo}")
        for name, ok, rule in (
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip >= 0, ">= 0"),
            ("warmup_frac", 0 <= self.warmup_frac < 1, "in [0, 1)"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
        ):
            if not ok:
                raise ValueError(f"{own}.{name}={getattr(self, name)!r} must be {rule}")
        if self.target_mode not in ("max", "min"):
            raise ValueError(f"{own}.target_mode={self.target_mode!r} is not one of ('max', 'min')")
        if isinstance(self.target, str):  # a single name or "a,b"
            object.__setattr__(self, "target", tuple(t for t in self.target.split(",") if t))
        object.__setattr__(self, "target", tuple(self.target))

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_frac * self.steps)


def loop_config(*, steps: int, warmup_steps: int, **kw) -> LoopConfig:
    """The shared loop's config from a warm-up given in steps (the SKA params' unit; the loop
    takes a fraction, and round(warmup_steps / steps · steps) is warmup_steps again)."""
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps={warmup_steps!r} must be an int in [0, steps={steps})")
    return LoopConfig(steps=steps, warmup_frac=warmup_steps / steps, **kw)


def split_config(cfg: dict, *classes) -> list[dict]:
    """Share the keys of ``cfg`` among dataclasses by field name; an unknown key is an error
    naming it and the known ones (so a typo in params never silently falls back)."""
    names = [{f.name for f in fields(c)} for c in classes]
    unknown = set(cfg) - set().union(*names)
    if unknown:
        known = sorted(set().union(*names))
        raise ValueError(f"unknown training keys {sorted(unknown)}; known: {known}")
    return [{k: v for k, v in cfg.items() if k in n} for n in names]


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled epochs of row indices; the ragged tail of each epoch is dropped
    (batch_size is capped at n, so a tiny set still yields full batches)."""
    bs = min(batch_size, n)
    while True:
        order = rng.permutation(n)
        for lo in range(0, n - bs + 1, bs):
            yield order[lo : lo + bs]


@dataclass
class LoopResult:
    history: dict = field(default_factory=lambda: {"train": [], "eval": []})
    best: dict | None = None  # {"step": int, **metrics} of the kept state (None: no eval)
    final: dict | None = None  # metrics of the last evaluation (before any restore)
    restored: bool = False  # True when the best state (not the last) was loaded back
    wall_s: float = 0.0


def _optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_all:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:  # matrices and tables decay; biases, norm gains and scalars do not
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _better(new: tuple, old: tuple | None, mode: str) -> bool:
    if old is None:
        return True
    return new > old if mode == "max" else new < old


def train(
    model: nn.Module,
    n_train: int,
    make_batch: Callable[[np.ndarray, np.random.Generator], object],
    loss_fn: Callable[[nn.Module, object, int], tuple[torch.Tensor, dict]],
    cfg: LoopConfig,
    evaluate: Callable[[nn.Module], dict] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> LoopResult:
    """Train ``model`` in place for ``cfg.steps`` steps; see the module docstring."""
    if n_train < 1:
        raise ValueError("train() needs at least one training example")
    torch.manual_seed(cfg.seed)
    order_rng, batch_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    batches = epoch_batches(n_train, cfg.batch_size, order_rng)
    opt = _optimizer(model, cfg)
    out, best_key, best_state = LoopResult(), None, None
    t0 = time.perf_counter()
    model.train()
    bar = progress_bar(cfg.steps, desc, enabled=progress)
    for step in bar:
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = make_batch(next(batches), batch_rng)
        loss, logs = loss_fn(model, batch, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        rec = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": float(norm)}
        rec.update({k: float(v) for k, v in logs.items()})
        rec["time_s"] = time.perf_counter() - t0
        out.history["train"].append(rec)
        last = step == cfg.steps - 1
        if evaluate is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            metrics = evaluate(model)
            model.train()
            out.history["eval"].append({"step": step, **metrics, "time_s": time.perf_counter() - t0})
            out.final = {"step": step, **metrics}
            key = tuple(float(metrics[t]) for t in cfg.target) if cfg.target else (step,)
            if _better(key, best_key, cfg.target_mode if cfg.target else "max"):
                best_key, out.best = key, {"step": step, **metrics}
                if not last:  # the live model already is the last state
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    best_state = None
            bar.set_postfix({t: f"{metrics[t]:.3f}" for t in cfg.target})
        else:
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
    if cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
        out.restored = True
    model.eval()
    out.wall_s = time.perf_counter() - t0
    return out


def config_dict(cfg) -> dict:
    """Plain-value dict of a config dataclass (tuples become lists), for history records."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
