"""delta: MinHash-estimated vs exact symmetric difference for one minhash_k."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="delta",
    reads=("minhash_k", "hash_seed", "universe", "set_size_min", "set_size_max", "n_pairs", "data_seed"),
    code=("studies.ska.correctness",),
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.correctness import delta_errors, random_set_pairs, summarize

    p = ctx.params
    pairs = random_set_pairs(p["n_pairs"], p["universe"], p["set_size_min"], p["set_size_max"], p["data_seed"])
    errors = delta_errors(p["minhash_k"], pairs, p["universe"], p["hash_seed"])
    torch.save(errors, ctx.out / "errors.pt")
    return {"minhash_k": p["minhash_k"], **summarize(errors)}
