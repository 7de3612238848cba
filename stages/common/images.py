"""images: the image dataset once per (source, sizes, seed): train, val and test.

Procedural: three disjoint seed streams. CIFAR-10: the first n_train + n_val rows of the HF
train split, cut into train and val by a seeded permutation; test is the official test split.
Selection and early stopping read val; only the evaluate stages read test. No image is in two
splits (byte-identical copies are dropped from the later split, and counted).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPLITS = ("train", "val", "test")

SPEC = StageSpec(
    name="images",
    reads=("image_source", "n_train", "n_val", "n_test", "image_seed"),
    code=("studies.data.images",),
    choices={"image_source": ("procedural", "cifar10")},
    types=dict.fromkeys(("n_train", "n_val", "n_test", "image_seed"), int),
    ranges=dict.fromkeys(("n_train", "n_val", "n_test"), ">= 1"),
)


def run(ctx: Context) -> dict:
    import torch

    from studies.data.images import cut_train_val, drop_shared, image_splits, load_cifar10

    p = ctx.params
    if p["image_source"] == "cifar10":
        x, y = load_cifar10("train", limit=p["n_train"] + p["n_val"])
        splits = cut_train_val(x, y, p["n_val"], p["image_seed"]) | {"test": load_cifar10("test", limit=p["n_test"])}
    else:
        splits = image_splits(p["n_train"], p["n_val"], p["n_test"], p["image_seed"])
    splits, dropped = drop_shared({s: splits[s] for s in SPLITS})
    torch.save({f"{s}_{t}": v for s, (x, y) in splits.items() for t, v in (("x", x), ("y", y))}, ctx.out / "images.pt")
    sizes = {f"n_{s}": len(y) for s, (_, y) in splits.items()}
    dupes = {f"n_{s}_duplicates_dropped": n for s, n in dropped.items() if s != "train"}  # train keeps all
    return sizes | dupes | {"classes": int(splits["train"][1].max()) + 1}


def load_split(images_dir, split: str):
    """(x uint8 [N, 3, 32, 32], y int64 [N]) of one split of an ``images`` node's output."""
    import torch

    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    data = torch.load(images_dir / "images.pt", weights_only=True)
    return data[f"{split}_x"], data[f"{split}_y"]
