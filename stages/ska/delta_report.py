"""report: table of MinHash Jaccard and Δ errors per set source and minhash_k, and their histograms."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="report", reads=(), needs=("delta",), code=("studies.report",), gather=True)


def run(ctx: Context) -> dict:
    import torch

    from studies.report import histograms, write_table

    key = lambda u: (u.metrics()["set_source"], u.metrics()["minhash_k"])  # noqa: E731
    nodes = sorted(ctx.inputs("delta"), key=key)
    write_table([u.metrics() for u in nodes], ctx.out / "table", sort_by="minhash_k", first=("set_source", "minhash_k"))
    for source in dict.fromkeys(key(u)[0] for u in nodes):
        errors = {f"k={key(u)[1]}": torch.load(u.path / "errors.pt") for u in nodes if key(u)[0] == source}
        n = len(next(iter(errors.values()))["delta"])
        for name, label in (("jaccard", "J"), ("delta", "Δ")):
            histograms(
                {k: (e[f"{name}_est"] - e[name]).tolist() for k, e in errors.items()},
                ctx.out / f"{name}_error_hist_{source}.png",
                xlabel=f"estimated {label} − exact {label}",
                title=f"{ctx.study}: MinHash {label} error, {source}, {n} set pairs",
            )
    return {"rows": len(nodes)}
