"""data: the set-recall sequences (studies/ska/synthetic.py), train/val/test from disjoint seeds.

The SKA positive control: a task where finding the earlier window with the most atoms in
common IS the signal. Each split is drawn from its own seed stream; a sequence found in two
splits is an error, not a silent overlap.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

DATA_KEYS = ("n_atoms", "set_size", "n_memory", "n_queries", "overlap", "decoy_overlap")

SPEC = StageSpec(
    name="data",
    reads=(*DATA_KEYS, "n_train", "n_val", "n_test", "data_seed"),
    code=("studies.ska.synthetic",),
    types=dict.fromkeys((*DATA_KEYS, "n_train", "n_val", "n_test", "data_seed"), int),
    ranges={**dict.fromkeys((*DATA_KEYS[:5], "n_train", "n_val", "n_test"), ">= 1"), "decoy_overlap": ">= 0"},
    checks={
        "overlap <= set_size": lambda overlap, set_size: overlap <= set_size,
        "decoy_overlap < overlap (else the decoy is as good a source)": lambda decoy_overlap, overlap: (
            decoy_overlap < overlap
        ),
        "set_size <= n_atoms (a window holds distinct atoms)": lambda set_size, n_atoms: set_size <= n_atoms,
        "n_queries <= n_memory - 2 (distinct sources, two windows clear of each query)": lambda n_queries, n_memory: (
            n_queries <= n_memory - 2
        ),
    },
)


def run(ctx: Context) -> dict:
    import json

    import torch

    from studies.ska.synthetic import SPLITS, SetRecallConfig, floors, generate, split_seed

    p = ctx.params
    cfg = SetRecallConfig(**{k: p[k] for k in DATA_KEYS})
    seen: dict[bytes, str] = {}
    metrics = {}
    for split in SPLITS:
        tokens, _ = generate(cfg, p[f"n_{split}"], split_seed(p["data_seed"], split))
        for row in tokens.numpy():
            other = seen.setdefault(row.tobytes(), split)
            if other != split:
                raise ValueError(f"a {split} sequence is also in {other}: the splits must be disjoint")
        torch.save(tokens, ctx.out / f"{split}.pt")
        metrics[f"{split}_seqs"] = len(tokens)
    (ctx.out / "config.json").write_text(json.dumps({k: p[k] for k in DATA_KEYS}))
    test = torch.load(ctx.out / "test.pt", weights_only=True)
    return metrics | {"seq_len": cfg.length - 1, **{f"test_{k}": v for k, v in floors(cfg, test).items()}}
