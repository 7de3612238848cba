"""langevin: the Langevin solver (studies/ebm/langevin.py) run on the TEST puzzles with one
trained model, so chains × steps is an axis that reuses it: K chains per puzzle from z ~ N(0, I),
T annealed steps, the lowest-energy chain kept; puzzles and chains as one batch (no loop per
puzzle). Only the puzzles are read: the solutions never reach this stage's computation."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

EVAL_BATCH = 256  # puzzles per decode batch (× chains rows)

SPEC = StageSpec(
    name="langevin",
    reads=("langevin_chains", "langevin_steps", "langevin_eta", "langevin_noise", "langevin_seed"),
    needs=("sudoku_data", "train"),
    code=("studies.ebm.langevin", "stages.ebm.train"),
    types={
        **dict.fromkeys(("langevin_chains", "langevin_steps", "langevin_seed"), int),
        **dict.fromkeys(("langevin_eta", "langevin_noise"), float),
    },
    ranges={"langevin_chains": ">= 1", **dict.fromkeys(("langevin_steps", "langevin_eta", "langevin_noise"), ">= 0")},
    gpus=1,
)


def run(ctx: Context) -> dict:
    import time

    import numpy as np
    import torch

    from stages.common.trained import load_trained
    from stages.ebm.train import build_model, load_split
    from studies.ebm.langevin import langevin

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    model, _ = load_trained(ctx.input("train"), build_model)
    model.to(ctx.device).eval()
    puzzles = torch.as_tensor(load_split(ctx, "test")["puzzles"].astype(np.int64))
    gen = torch.Generator().manual_seed(p["langevin_seed"])
    boards, energy, chain = [], [], []
    t0 = time.perf_counter()
    for lo in range(0, len(puzzles), EVAL_BATCH):
        out = langevin(
            model,
            puzzles[lo : lo + EVAL_BATCH].to(ctx.device),
            chains=p["langevin_chains"],
            steps=p["langevin_steps"],
            eta=p["langevin_eta"],
            noise=p["langevin_noise"],
            generator=gen,
        )
        boards.append(out.boards.cpu())
        energy.append(out.energy.cpu())
        chain.append(out.chain.cpu())
    wall = time.perf_counter() - t0
    boards, energy = torch.cat(boards).numpy().astype(np.uint8), torch.cat(energy).numpy()
    np.savez(ctx.out / "boards.npz", boards=boards, energy=energy, chain=torch.cat(chain).numpy())
    return {"n_puzzles": len(boards), "mean_energy": float(energy.mean()), "langevin_wall_s": wall}
