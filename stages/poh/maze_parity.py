"""parity: the PoH width whose parameter count is within 10% of the baseline's (same depth
and heads); a cheap stage of its own so PoH training cells consume one decision."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="parity",
    reads=("maze_n", "d_model", "n_heads", "d_ff", "depth", "R"),
    code=("studies.poh.parity", "studies.poh.maze_models"),
)


def run(ctx: Context) -> dict:
    from studies.poh.maze_models import MazeConfig, build_maze_model
    from studies.poh.parity import count_params, match_width

    p = ctx.params
    base = MazeConfig(
        n=p["maze_n"], d_model=p["d_model"], n_heads=p["n_heads"], d_ff=p["d_ff"], depth=p["depth"], R=p["R"]
    )
    target = count_params(lambda: build_maze_model(base, "baseline"))

    def make_poh(d, d_ff):
        return build_maze_model(MazeConfig(**{**base.__dict__, "d_model": d, "d_ff": d_ff}), "poh")

    d, d_ff, n = match_width(make_poh, target, p["n_heads"], p["depth"], p["d_ff"] / p["d_model"])
    return {
        "baseline_params": target,
        "poh_d_model": d,
        "poh_d_ff": d_ff,
        "poh_params": n,
        "relative_gap": n / target - 1,
    }
