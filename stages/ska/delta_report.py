"""report: table of MinHash Δ errors per minhash_k and their histograms."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=(), needs=("delta",), code=("studies.report",), gather=True)


def run(ctx: Context) -> dict:
    import torch

    from studies.report import histograms, write_table

    nodes = sorted(ctx.inputs("delta"), key=lambda u: u.metrics()["minhash_k"])
    write_table([u.metrics() for u in nodes], ctx.out / "table", sort_by="minhash_k", first=("minhash_k",))
    errors = {f"k={u.metrics()['minhash_k']}": torch.load(u.path / "errors.pt") for u in nodes}
    histograms(
        {k: (e["delta_est"] - e["delta"]).tolist() for k, e in errors.items()},
        ctx.out / "delta_error_hist.png",
        xlabel="estimated Δ − exact Δ",
        title=f"{ctx.study}: MinHash Δ error over {len(next(iter(errors.values()))['delta'])} set pairs",
    )
    return {"rows": len(nodes)}
