"""Training and evaluation of the maze path models (PoH refinement vs transformer baseline).

Data are the arrays of ``studies.data.mazes.generate_dataset``: ``walls`` uint8 [M, n²]
(open-side bits), ``start``/``goal`` [M], ``path`` [M, Lmax] (BFS cells, −1 padded),
``path_len`` [M] (cells), ``n``.

Loss (multi-horizon CE): the token of path cell t predicts the cells t+k, k = 1..K. Label
smoothing ε is spread over the *allowed* cells only: for k = 1 the connected, in-bounds
neighbours of path[t] (``valid_next_mask``); logits outside them are set to −∞ *before*
smoothing, so the target puts zero mass there and the loss stays O(1) (the source masked
after smoothing with −1e9 fills and logged losses of ~1e8). For k > 1, ``horizon_mask``:
``distance`` (default) allows the cells at graph distance exactly k from path[t] (k = 1 gives
the neighbour mask; on a tree the BFS cell t+k always is one), ``none`` leaves k > 1
unmasked with smoothing over all n² cells (the source). The mean is over all (t, k) terms.
Routing-entropy regulariser: + λ_t · mean H(α), differentiable, λ_t linear from λ to 0.

Evaluation: one forward per maze, then a greedy roll-out from the start on the k = 1 scores:
move to the highest-scoring connected, unvisited neighbour, or to the highest-scoring
connected neighbour when every one is visited; stop at the goal or after n² moves. Lengths
count cells (start and goal included), as the source did; metrics in ``studies.poh.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from studies.poh.maze_models import MazeConfig, build_maze_model, valid_next_mask
from studies.poh.metrics import maze_metrics
from studies.train_loop import LoopConfig, anneal_linear, config_dict, split_config, train

HORIZON_MASKS = ("distance", "none")


@dataclass(frozen=True)
class MazeTaskConfig:
    label_smoothing: float = 0.1
    horizon_mask: str = "distance"  # distance | none (k > 1 unmasked, the source)
    entropy_weight: float = 5e-4  # λ of the routing-entropy term (PoH only); 0 = off
    entropy_anneal: bool = True  # λ linearly to 0 over training
    eval_batch_size: int = 64

    def __post_init__(self):
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"MazeTaskConfig.label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        if self.horizon_mask not in HORIZON_MASKS:
            raise ValueError(f"MazeTaskConfig.horizon_mask={self.horizon_mask!r} is not one of {HORIZON_MASKS}")


def as_tensors(data: dict) -> dict:
    """Long tensors walls [M, n²], start, goal, path [M, Lmax], path_len, and int n."""
    out = {k: torch.as_tensor(np.asarray(data[k])).long() for k in ("walls", "start", "goal", "path", "path_len")}
    out["n"] = int(data["n"])
    return out


def maze_keys(data: dict) -> list[bytes]:
    """One key per maze: its walls, start and goal (the identity used for disjoint splits)."""
    w = np.ascontiguousarray(np.asarray(data["walls"], dtype=np.uint8))
    ends = np.stack([np.asarray(data["start"]), np.asarray(data["goal"])], 1).astype(np.int64)
    return [a.tobytes() + b.tobytes() for a, b in zip(w, ends, strict=True)]


def split_mazes(data: dict, n_val: int, n_test: int, seed: int) -> tuple[dict, dict, dict]:
    """Seeded (train, val, test) with duplicates (same walls, start, goal) dropped, so no
    maze is in two splits."""
    keys = maze_keys(data)
    _, first = np.unique(np.array(keys, dtype=object), return_index=True)
    order = np.random.default_rng(seed).permutation(np.sort(first))
    if n_val + n_test >= len(order):
        raise ValueError(f"n_val={n_val} + n_test={n_test} leaves no training maze of {len(order)} distinct")
    m = len(keys)

    def take(idx):
        return {k: (v[idx] if isinstance(v, np.ndarray) and len(v) == m else v) for k, v in data.items()}

    test, val = order[:n_test], order[n_test : n_test + n_val]
    return take(order[n_test + n_val :]), take(val), take(test)


def horizon_targets(path: Tensor, path_len: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """(pos [B, L], target [B, L, K]): pos = path cell t (0 where padded), target = cell
    t+k or −1 where t+k is past the goal; L = Lmax − 1 source positions."""
    B, Lmax = path.shape
    t = torch.arange(Lmax - 1, device=path.device)
    pos = path[:, :-1].clamp_min(0)
    tk = t[:, None] + torch.arange(1, K + 1, device=path.device)  # [L, K]
    ok = tk[None] < path_len[:, None, None]  # [B, L, K]
    target = path.gather(1, tk.clamp_max(Lmax - 1).flatten()[None].expand(B, -1)).view(B, Lmax - 1, K)
    return pos, torch.where(ok, target, torch.full_like(target, -1))


def allowed_cells(walls: Tensor, n: int, pos: Tensor, K: int, mode: str = "distance") -> Tensor:
    """bool [B, L, K, n²]: cells allowed as the k-th next cell from ``pos`` [B, L]."""
    adj = valid_next_mask(walls, n)  # [B, N, N]
    N = n * n
    rows = adj.gather(1, pos[..., None].expand(-1, -1, N))  # k = 1: neighbours of pos
    if mode == "none":
        rest = torch.ones(*pos.shape, K - 1, N, dtype=torch.bool, device=pos.device)
        return torch.cat([rows[:, :, None], rest], 2)
    seen = rows | torch.nn.functional.one_hot(pos, N).bool()
    out, front, a = [rows], rows, adj.float()
    for _ in range(K - 1):  # cells first reached at distance k
        front = (torch.bmm(front.float(), a) > 0) & ~seen
        seen = seen | front
        out.append(front)
    return torch.stack(out, 2)


def masked_smoothed_ce(logits: Tensor, allowed: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-row loss and the smoothed target q, for rows with target ≥ 0 (others give 0).

    logits, allowed [..., N]; target [...]. Disallowed logits are −∞ *before* smoothing; q =
    (1 − ε)·onehot(target) + ε/|allowed| on allowed cells, 0 elsewhere."""
    valid = target >= 0
    tgt = target.clamp_min(0)
    hit = allowed.gather(-1, tgt[..., None]).squeeze(-1)
    if bool((valid & ~hit).any()):
        raise ValueError("a path target is not among the allowed cells: mask or data is wrong")
    allowed = allowed | ~valid[..., None]  # padded rows: any finite row, weighted 0 below
    logp = logits.float().masked_fill(~allowed, float("-inf")).log_softmax(-1)
    q = allowed.float() * (eps / allowed.sum(-1, keepdim=True).float())
    q = q + (1 - eps) * torch.nn.functional.one_hot(tgt, logits.shape[-1]).float()
    loss = -(q * logp.masked_fill(~allowed, 0.0)).sum(-1)
    return loss * valid.float(), q * valid[..., None].float()


def horizon_ce(logits: Tensor, batch: dict, task: MazeTaskConfig) -> Tensor:
    """Mean masked, smoothed CE over all (t, k) terms; logits [B, N, K, N] of one batch."""
    n, K = batch["n"], logits.shape[2]
    pos, target = horizon_targets(batch["path"], batch["path_len"], K)
    rows = logits.gather(1, pos[..., None, None].expand(-1, -1, K, n * n))  # [B, L, K, N]
    allowed = allowed_cells(batch["walls"], n, pos, K, task.horizon_mask)
    per, _ = masked_smoothed_ce(rows, allowed, target, task.label_smoothing)
    return per.sum() / (target >= 0).sum().clamp_min(1)


def maze_loss(model: nn.Module, batch: dict, step: int, steps: int, task: MazeTaskConfig):
    """(loss, logs): mean masked, smoothed multi-horizon CE + annealed λ·entropy (PoH)."""
    out = model(batch["walls"], batch["start"], batch["goal"])  # logits [B, N, K, N]
    ce = horizon_ce(out.logits, batch, task)
    loss, logs = ce, {"ce": ce.item()}
    if task.entropy_weight > 0 and out.entropy is not None:
        lam = anneal_linear(task.entropy_weight, step, steps) if task.entropy_anneal else task.entropy_weight
        ent = out.entropy.mean()
        loss = loss + lam * ent
        logs.update(route_entropy=ent.item(), entropy_weight=lam)
    return loss, logs


def greedy_rollout(scores: Tensor, walls: Tensor, start: Tensor, goal: Tensor, n: int, max_moves: int | None = None):
    """Greedy walk on next-cell scores [B, N, N] (row = current cell): → (reached bool [B],
    length in cells [B], cells visited [B, max_moves + 1], −1 after the walk stops)."""
    B, N = scores.shape[0], n * n
    max_moves = N if max_moves is None else max_moves
    adj = valid_next_mask(walls, n)
    b = torch.arange(B, device=scores.device)
    cur, goal = start.long().clone(), goal.long()
    visited = torch.nn.functional.one_hot(cur, N).bool()
    length, done = torch.ones(B, dtype=torch.long, device=cur.device), cur == goal
    trail = torch.full((B, max_moves + 1), -1, dtype=torch.long, device=cur.device)
    trail[:, 0] = cur
    for t in range(max_moves):
        if bool(done.all()):
            break
        nb = adj[b, cur]  # [B, N] connected neighbours
        fresh = nb & ~visited
        use = torch.where(fresh.any(-1, keepdim=True), fresh, nb)
        nxt = scores[b, cur].float().masked_fill(~use, float("-inf")).argmax(-1)
        move = ~done & use.any(-1)
        cur = torch.where(move, nxt, cur)
        visited[b[move], cur[move]] = True
        length += move.long()
        trail[move, t + 1] = cur[move]
        done = done | (cur == goal)
    return done, length, trail


def junction_hits(scores: Tensor, batch: dict) -> tuple[Tensor, Tensor]:
    """Teacher-forced roll-out decisions at the junctions of the BFS path: (hit bool [J],
    options long [J]) for every path cell whose connected neighbours, the previous path cell
    excluded, number ≥ 2 (elsewhere the roll-out has one unvisited choice). A hit: the best-
    scoring option is the next path cell. All hits ⇔ the roll-out is exactly optimal."""
    pos, target = horizon_targets(batch["path"], batch["path_len"], 1)
    nb = valid_next_mask(batch["walls"], batch["n"])
    cand = nb.gather(1, pos[..., None].expand(-1, -1, nb.shape[-1])).clone()  # [B, L, N]
    prev = torch.cat([torch.full_like(pos[:, :1], -1), batch["path"][:, :-2]], 1)  # path[t−1]
    has_prev = prev >= 0
    cand[has_prev] = cand[has_prev].scatter(-1, prev[has_prev][:, None], False)
    rows = scores.gather(1, pos[..., None].expand(-1, -1, scores.shape[-1]))
    pick = rows.float().masked_fill(~cand, float("-inf")).argmax(-1)
    options = cand.sum(-1)
    keep = (target[..., 0] >= 0) & (options >= 2)
    return (pick == target[..., 0])[keep], options[keep]


@torch.no_grad()
def evaluate_maze(model: nn.Module, data: dict, batch_size: int = 64, task: MazeTaskConfig | None = None) -> dict:
    """Greedy roll-out metrics (acc, opt, exact_opt, len_ratio, n), the teacher-forced
    ``junction_acc`` and its uniform-choice ``junction_chance``, and ``loss``, the masked,
    smoothed multi-horizon CE of ``task`` (batch means weighted by mazes) on ``data``. The
    model reads walls, start and goal only; the BFS path is used for the loss and scoring. The
    batches go to the model's device; the per-maze results come back to the CPU."""
    device, was = next(model.parameters()).device, model.training
    model.eval()
    d = as_tensors(data)
    n, M = d["n"], len(d["start"])
    task = task or MazeTaskConfig()
    reached, length, losses, steps_ok = [], [], [], []
    for lo in range(0, M, batch_size):
        sl = slice(lo, lo + batch_size)
        batch = {k: (v[sl].to(device) if torch.is_tensor(v) else v) for k, v in d.items()}
        out = model(batch["walls"], batch["start"], batch["goal"])
        r, ln, _ = greedy_rollout(out.logits[:, :, 0], batch["walls"], batch["start"], batch["goal"], n)
        reached.append(r.cpu())
        length.append(ln.cpu())
        steps_ok.append(tuple(t.cpu() for t in junction_hits(out.logits[:, :, 0], batch)))
        losses.append(horizon_ce(out.logits, batch, task).item() * len(batch["start"]))
    model.train(was)
    metrics = maze_metrics(torch.cat(reached), torch.cat(length), d["path_len"])
    metrics["loss"] = sum(losses) / max(M, 1)
    hits, options = torch.cat([h for h, _ in steps_ok]), torch.cat([o for _, o in steps_ok])
    metrics["junction_acc"] = hits.float().mean().item() if len(hits) else float("nan")
    metrics["junction_chance"] = (1.0 / options.float()).mean().item() if len(hits) else float("nan")
    return metrics


def random_rollout_floor(data: dict, seed: int = 0, draws: int = 8) -> dict:
    """The floor of the greedy roll-out: ``random_acc`` and ``random_opt``, the mean over
    ``draws`` seeded draws of acc and opt when every next-cell score is uniformly random. The
    same rules as ``evaluate_maze`` (connected, unvisited first; n² moves), on the same mazes,
    so a model must beat this, not 0, to have learned anything."""
    d = as_tensors(data)
    n, N, M = d["n"], d["n"] * d["n"], len(d["start"])
    gen = torch.Generator().manual_seed(seed)
    acc, opt = [], []
    for _ in range(draws):
        scores = torch.rand(M, N, N, generator=gen)
        reached, length, _ = greedy_rollout(scores, d["walls"], d["start"], d["goal"], n)
        m = maze_metrics(reached, length, d["path_len"])
        acc.append(m["acc"])
        opt.append(m["opt"])
    return {"random_acc": sum(acc) / draws, "random_opt": sum(opt) / draws}


def run_maze_cell(cfg: dict, train_data: dict, val_data: dict, progress: bool = True, device="cpu"):
    """Train one cell on ``device`` → (model with the kept state, history, metrics).

    ``cfg = {"model": {"kind": "baseline" | "poh", **MazeConfig fields (n from the data)},
    "train": {**LoopConfig fields, **MazeTaskConfig fields}}``, plain values only; the seed
    also seeds model initialisation. The kept state is chosen on val (acc, then opt)."""
    loop_kw, task_kw = split_config(dict(cfg["train"]), LoopConfig, MazeTaskConfig)
    loop_kw.setdefault("target", ("acc", "opt"))
    loop, task = LoopConfig(**loop_kw), MazeTaskConfig(**task_kw)
    if set(maze_keys(train_data)) & set(maze_keys(val_data)):
        raise ValueError("a maze (walls, start, goal) is in both the train and val splits")
    model_kw = dict(cfg["model"])
    kind = model_kw.pop("kind")
    mcfg = replace(MazeConfig(**model_kw), n=int(train_data["n"]))
    torch.manual_seed(loop.seed)
    model = build_maze_model(mcfg, kind).to(device)
    d = as_tensors(train_data)
    result = train(
        model,
        len(d["start"]),
        lambda idx, rng: {k: (v[idx].to(device) if torch.is_tensor(v) else v) for k, v in d.items()},
        lambda m, b, step: maze_loss(m, b, step, loop.steps, task),
        loop,
        evaluate=lambda m: evaluate_maze(m, val_data, task.eval_batch_size, task),
        progress=progress,
        desc=f"maze {mcfg.n}x{mcfg.n} {kind}",
    )
    best, final = result.best or {}, result.final or {}
    metrics = {
        **{f"best_val_{k}": best.get(k) for k in ("acc", "opt", "exact_opt")},
        **{f"final_val_{k}": final.get(k) for k in ("acc", "opt", "exact_opt", "loss")},
        "best_step": best.get("step"),
        "restored_best": result.restored,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "kind": kind,
        "steps": loop.steps,
        "seed": loop.seed,
        "n_train": len(d["start"]),
        "n_val": len(val_data["start"]),
        "wall_s": result.wall_s,
        "s_per_step": result.wall_s / loop.steps,
    }
    history = {**result.history, "loop": config_dict(loop), "task": config_dict(task)}
    return model, history, metrics
