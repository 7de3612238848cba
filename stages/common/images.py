"""images: the image dataset once per (source, sizes, seed): procedural shapes or CIFAR-10.

Train and test come from disjoint seed streams (procedural) or the published splits.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="images",
    reads=("image_source", "n_train", "n_test", "image_seed"),
    code=("studies.data.images",),
    choices={"image_source": ("procedural", "cifar10")},
)


def run(ctx: Context) -> dict:
    import torch

    from studies.data.images import image_splits, load_cifar10

    p = ctx.params
    if p["image_source"] == "cifar10":
        splits = {s: load_cifar10(s, limit=p[f"n_{s}"]) for s in ("train", "test")}
    else:
        splits = image_splits(p["n_train"], p["n_test"], p["image_seed"])
    torch.save({f"{s}_{t}": v for s, (x, y) in splits.items() for t, v in (("x", x), ("y", y))}, ctx.out / "images.pt")
    return {f"n_{s}": len(y) for s, (_, y) in splits.items()} | {"classes": int(splits["train"][1].max()) + 1}
