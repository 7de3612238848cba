"""delta: MinHash-estimated vs exact Jaccard and symmetric difference for one minhash_k and set source."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="delta",
    reads=(
        "minhash_k",
        "hash_seed",
        "set_source",
        "universe",
        "set_size_min",
        "set_size_max",
        "window",
        "stride",
        "patch",
        "n_pairs",
        "data_seed",
    ),
    code=("studies.ska.correctness", "studies.ska.banks", "studies.ska.vit", "studies.data.images"),
    choices={"set_source": ("random", "lm_windows", "image_windows")},
    types=dict.fromkeys(
        ("minhash_k", "hash_seed", "universe", "set_size_min", "set_size_max", "window", "stride", "patch"), int
    )
    | {"n_pairs": int, "data_seed": int},
    ranges=dict.fromkeys(
        ("minhash_k", "universe", "set_size_min", "set_size_max", "window", "stride", "patch", "n_pairs"), ">= 1"
    ),
    checks={
        "set_size_min <= set_size_max": lambda set_size_min, set_size_max: set_size_min <= set_size_max,
        "set_size_max <= universe": lambda set_size_max, universe: set_size_max <= universe,
    },
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.correctness import delta_errors, source_pairs, summarize

    p = ctx.params
    pairs, adjacent, universe = source_pairs(p)
    errors = delta_errors(p["minhash_k"], pairs, universe, p["hash_seed"])
    torch.save({**errors, "adjacent": adjacent}, ctx.out / "errors.pt")
    return {"set_source": p["set_source"], "minhash_k": p["minhash_k"], **summarize(errors, adjacent)}
