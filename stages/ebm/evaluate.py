"""evaluate: test metrics of one trained model in each decoding mode, every name tagged with it:
``test_langevin_*`` (the Langevin stage's boards) and ``test_z_zero_*`` are solver results;
``test_oracle_z_*`` decodes a latent built from the SOLUTION (the source's training-time
"accuracy") and is an upper reference, never a solver. Beside them the floors on the same test
puzzles: ``chance`` (1/9) and ``candidate_uniform`` (a uniform guess among the digits the
givens allow). A test puzzle with no or several solutions is refused, naming its row (a board
that solves it otherwise would be scored wrong). Metrics per mode: blank_acc, puzzle_acc,
group_ok, valid_frac (studies/ebm/metrics.py)."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SOLVER = ("langevin", "z_zero")
ORACLE = "oracle_z"
METRICS = ("blank_acc", "puzzle_acc", "group_ok", "valid_frac")

SPEC = StageSpec(
    name="evaluate",
    reads=(),
    needs=("sudoku_data", "train", "langevin"),
    code=("studies.ebm.train", "studies.ebm.metrics", "studies.ebm.checks", "stages.ebm.train"),
    metrics=(  # solver modes only: the oracle_z columns are not a result to rank by
        *(f"test_{mode}_{m}" for mode in ("langevin", "z_zero") for m in METRICS),
        "test_langevin_gain",
        "chance",
        "candidate_uniform",
    ),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import numpy as np
    import torch

    from stages.common.trained import load_trained
    from stages.ebm.train import build_model, load_split
    from studies.ebm.checks import check_unique
    from studies.ebm.metrics import solver_metrics
    from studies.ebm.train import evaluate_split

    torch.set_num_threads(ctx.threads)
    model, _ = load_trained(ctx.input("train"), build_model)
    model.to(ctx.device).eval()
    test = load_split(ctx, "test")
    check_unique(test["puzzles"], "sudoku_data test split")  # one stored solution must be THE solution
    with np.load(ctx.input("langevin") / "boards.npz") as f:
        boards = f["boards"]
    if boards.shape != test["puzzles"].shape:
        raise ValueError(f"langevin boards {boards.shape} do not match the test split {test['puzzles'].shape}")
    by_mode = {"langevin": solver_metrics(boards, test["solutions"], test["puzzles"])}
    for mode in ("z_zero", ORACLE):
        by_mode[mode] = evaluate_split(model, test, mode)
    out = {f"test_{mode}_{m}": by_mode[mode][m] for mode in by_mode for m in METRICS}
    out["test_langevin_gain"] = out["test_langevin_blank_acc"] - out["test_z_zero_blank_acc"]
    floors = by_mode["langevin"]
    return out | {"n_test": floors["n"], "chance": floors["chance"], "candidate_uniform": floors["candidate_floor"]}
