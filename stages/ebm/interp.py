"""report (of ebm_interp): the five interpretability experiments on one trained cell, each a
figure plus a CSV, on an explicit held-out puzzle set (``held_out``: the first ``interp_n`` test
puzzles, re-checked disjoint from train by content up to digit relabelling and transpose — the
source's interpretability "test" puzzles were mostly training puzzles).

1. lock-in: the Langevin step from which each blank cell's probability on its true digit stays
   above ``interp_threshold`` (histogram; cells that never lock in are counted apart);
2. strategies: events between consecutive committed boards of the Langevin trajectory,
   classified naked/hidden single … X-wing (counts per step);
3. head specialisation: per decoder head, attention within row/column/box over the mean, at
   z = 0 (a solver decode: no solution enters), labelled when > 1.2;
4. head ablation: change of Langevin blank accuracy when one head's out-projection columns are
   zeroed, the same z₀ and noise on both sides;
5. oracle vs Langevin: per puzzle blank accuracy decoded from the solution's latent (NOT a
   solver) against Langevin's (a solver).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="report",
    reads=("interp_n", "interp_chains", "interp_steps", "interp_seed", "interp_threshold"),
    needs=("sudoku_data", "train"),
    code=("studies.ebm.interp", "studies.ebm.langevin", "studies.report", "stages.ebm.train"),
    gather=True,
    types={
        **dict.fromkeys(("interp_n", "interp_chains", "interp_steps", "interp_seed"), int),
        "interp_threshold": float,
    },
    ranges={
        **dict.fromkeys(("interp_n", "interp_chains"), ">= 1"),
        "interp_steps": ">= 0",
        "interp_threshold": "(0, 1)",
    },
    gpus=1,
)


def held_out(train: dict, test: dict, n: int) -> dict:
    """The first ``n`` test puzzles; ValueError if any equals a training puzzle up to digit
    relabelling and transpose (the training augmentation's symmetries)."""
    import numpy as np

    from studies.data import sudoku

    if not 1 <= n <= len(test["puzzles"]):
        raise ValueError(f"interp_n={n} must be in [1, {len(test['puzzles'])}] (the test split's size)")
    picked = sudoku.subset(test, np.arange(n))
    key = lambda p: {bytes(r) for r in sudoku.canonical(p)}  # noqa: E731
    shared = key(picked["puzzles"]) & key(train["puzzles"])
    if shared:
        raise ValueError(f"{len(shared)} interpretability puzzles equal a training puzzle up to relabelling/transpose")
    return picked


def run(ctx: Context) -> dict:
    import numpy as np
    import torch

    from stages.common.trained import load_trained
    from stages.ebm.train import build_model, load_split
    from studies.ebm import interp
    from studies.ebm.langevin import langevin, oracle_z
    from studies.ebm.metrics import solver_metrics
    from studies.report import write_table

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    (unit,) = ctx.inputs("train") if len(ctx.inputs("train")) == 1 else (None,)
    if unit is None:
        raise ValueError(f"ebm_interp studies one trained cell; this study has {len(ctx.cells)}: {sorted(ctx.cells)}")
    model, _ = load_trained(unit.path, build_model)
    model.to(ctx.device).eval()
    data = held_out(load_split(ctx, "train"), load_split(ctx, "test"), p["interp_n"])
    puzzles_np, solutions_np = data["puzzles"].astype(np.int64), data["solutions"].astype(np.int64)
    puzzles = torch.as_tensor(puzzles_np).to(ctx.device)
    blank = puzzles_np == 0
    np.savetxt(ctx.out / "interp_puzzles.csv", puzzles_np, fmt="%d", delimiter=",")
    gen = torch.Generator().manual_seed(p["interp_seed"])
    run_l = langevin(model, puzzles, p["interp_chains"], p["interp_steps"], generator=gen, record=True)
    traj = run_l.trajectory.cpu().numpy()  # [T+1, B, 81, 9]
    lang_boards = run_l.boards.cpu().numpy()

    # 1. lock-in
    lock = interp.lock_in_steps(traj, solutions_np, p["interp_threshold"])[blank]
    _write_csv(ctx.out / "lock_in.csv", ("puzzle", "cell", "lock_in_step"), _cells(blank, lock))
    _lock_in_figure(lock, p["interp_steps"], ctx.out / "lock_in.png")

    # 2. strategies
    codes = interp.trajectory_strategies(traj, p["interp_threshold"])  # [T, B, 81]
    counts = np.stack([(codes == c).sum((1, 2)) for c in range(len(interp.STRATEGIES))], 1)  # [T, strategies]
    _write_csv(
        ctx.out / "strategies.csv",
        ("step", *interp.STRATEGIES),
        [(t, *map(int, c)) for t, c in enumerate(counts)],
    )
    _strategy_figure(counts, ctx.out / "strategies.png")

    # 3. head specialisation (z = 0)
    z0 = torch.zeros(len(puzzles), model.cfg.d_z).to(ctx.device)
    maps = interp.attention_maps(model, puzzles, z0).cpu().numpy()
    ratios, labels = interp.head_specialisation(maps)
    heads = [
        (li, h, *map(float, ratios[li, h]), str(labels[li, h]))
        for li in range(ratios.shape[0])
        for h in range(ratios.shape[1])
    ]
    _write_csv(ctx.out / "heads.csv", ("layer", "head", "row_ratio", "col_ratio", "box_ratio", "label"), heads)

    # 4. head ablation
    effects = interp.head_ablation_effects(
        model, puzzles, solutions_np, p["interp_chains"], p["interp_steps"], p["interp_seed"]
    )
    _write_csv(
        ctx.out / "head_ablation.csv",
        ("layer", "head", "blank_acc_change"),
        [(li, h, float(effects[li, h])) for li in range(effects.shape[0]) for h in range(effects.shape[1])],
    )
    _heads_figure(ratios, labels, effects, ctx.out / "heads.png")

    # 5. oracle vs Langevin
    oracle_boards = oracle_z(model, puzzles, torch.as_tensor(solutions_np).to(ctx.device)).boards.cpu().numpy()
    per = [
        ((b == s)[m].mean(), (o == s)[m].mean())
        for b, o, s, m in zip(lang_boards, oracle_boards, solutions_np, blank, strict=True)
    ]
    _write_csv(
        ctx.out / "recovery.csv",
        ("puzzle", "langevin_blank_acc", "oracle_blank_acc"),
        [(i, float(a), float(b)) for i, (a, b) in enumerate(per)],
    )
    _recovery_figure(per, ctx.out / "recovery.png")
    summary = []
    for mode, boards in (("langevin (solver)", lang_boards), ("oracle_z (NOT a solver)", oracle_boards)):
        m = solver_metrics(boards, solutions_np, puzzles_np)
        summary.append({"mode": mode, "n": m["n"], **{k: m[k] for k in ("blank_acc", "puzzle_acc", "group_ok")}})
    write_table(summary, ctx.out / "interp", sort_by="mode", first=("mode", "n"))
    locked = lock >= 0
    return {
        "cells": len(ctx.cells),
        "n_interp": len(puzzles_np),
        "langevin_blank_acc": summary[0]["blank_acc"],
        "oracle_blank_acc": summary[1]["blank_acc"],
        "locked_frac": float(locked.mean()),
        "median_lock_in_step": float(np.median(lock[locked])) if locked.any() else -1.0,
        "specialised_heads": int((labels != "mixed").sum()),
        "max_head_ablation_drop": float(-effects.min()),
    }


def _cells(blank, values):
    """(puzzle, cell, value) for each blank cell, in the order numpy's boolean indexing uses."""
    import numpy as np

    puzzle, cell = np.nonzero(blank)
    return [(int(a), int(b), int(v)) for a, b, v in zip(puzzle, cell, values, strict=True)]


def _write_csv(path, header, rows) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _lock_in_figure(lock, steps: int, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(lock[lock >= 0], bins=range(steps + 2), color="tab:blue")
    ax.set_xlabel("Langevin step of lock-in (p > threshold from then on)")
    ax.set_ylabel("blank cells")
    ax.set_title(f"lock-in; {int((lock < 0).sum())} of {len(lock)} cells never lock in", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _strategy_figure(counts, path) -> None:
    import matplotlib.pyplot as plt

    from studies.ebm.interp import STRATEGIES

    fig, ax = plt.subplots(figsize=(7, 3.8))
    bottom = 0
    for i, name in enumerate(STRATEGIES):
        ax.bar(range(len(counts)), counts[:, i], bottom=bottom, label=name)
        bottom = bottom + counts[:, i]
    ax.set_xlabel("step t → t+1")
    ax.set_ylabel("cell events")
    ax.set_title("strategy explaining each newly committed cell", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _heads_figure(ratios, labels, effects, path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    layers, heads = labels.shape
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.2 + 0.3 * layers))
    im = axs[0].imshow(ratios.max(-1), cmap="viridis")
    for li in range(layers):
        for h in range(heads):
            axs[0].text(h, li, labels[li, h], ha="center", va="center", fontsize=7, color="white")
    axs[0].set_title("specialisation (max within-unit ratio; label > 1.2)", fontsize=9)
    fig.colorbar(im, ax=axs[0])
    lim = max(1e-9, float(np.abs(effects).max()))
    im = axs[1].imshow(effects, cmap="coolwarm", vmin=-lim, vmax=lim)
    axs[1].set_title("ablating one head: change of Langevin blank acc", fontsize=9)
    fig.colorbar(im, ax=axs[1])
    for ax in axs:
        ax.set_xlabel("head")
        ax.set_ylabel("decoder layer")
        ax.set_xticks(range(heads))
        ax.set_yticks(range(layers))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _recovery_figure(per, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter([b for _, b in per], [a for a, _ in per], s=10)
    ax.plot([0, 1], [0, 1], color="black", lw=0.8)
    ax.set_xlabel("oracle_z blank acc (NOT a solver)")
    ax.set_ylabel("Langevin blank acc (solver)")
    ax.set_title("per puzzle: how much of the oracle Langevin recovers", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
