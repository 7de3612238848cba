"""32×32 RGB image classification data: procedural shapes (offline default) and CIFAR-10.

``make_images(n, seed)`` draws, deterministically from ``seed``, one of ten SHAPES per image
(the class) at a random centre, half-size 5–10 px and tilt ±10°, filled with a jittered
colour from an 8-colour palette, over a background made of a random dim colour, a random
linear gradient, three 1–2 px specks of random colour, and per-pixel Gaussian noise (σ 0.08).
Classes are balanced exactly (n // 10 each, the first n % 10 classes one more) in a seeded
order. Because the position, size and colour vary freely, the pixel-space class means are
blurs and a nearest-class-mean classifier is far from perfect (≈0.3 top-1), while a small
CNN learns the shapes (test_images.py measures both).

Splits (``image_splits``): train, val and test come from the disjoint numpy seed streams
(seed, 0), (seed, 2) and (seed, 1) (test keeps the stream it had before val existed).
``cut_train_val`` splits one labelled set (CIFAR-10's train split) into train and val by a
seeded permutation. ``drop_shared`` enforces disjointness by content: an image byte-identical
to one of an earlier split is dropped from the later one (real data can hold duplicates).

``load_cifar10`` reads CIFAR-10 through HF ``datasets`` (hub ``uoft-cs/cifar10``, columns
``img`` (PNG) and ``label``), either from the hub or from local parquet files in that
format. Both sources return uint8 [N, 3, 32, 32] and int64 [N].
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

from studies.data.hub import hub_offline

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar_h", "bar_v", "diamond", "dots", "l_shape")
PALETTE = np.array(  # RGB in [0, 1]: red, green, blue, yellow, cyan, magenta, orange, white
    [[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.95], [0.95, 0.9, 0.1],
     [0.1, 0.85, 0.9], [0.85, 0.2, 0.85], [1.0, 0.55, 0.05], [0.95, 0.95, 0.95]]
)  # fmt: skip
SIZE = 32
CIFAR10_HUB_PATH = "uoft-cs/cifar10"


def _shape_mask(cls: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean [n, 32, 32]: pixels inside shape ``cls``; dx, dy [n, 32, 32] tilted offsets, r [n, 1, 1]."""
    ax, ay, d = np.abs(dx), np.abs(dy), np.hypot(dx, dy)
    name = SHAPES[cls]
    if name == "circle":
        return d <= r
    if name == "square":
        return np.maximum(ax, ay) <= 0.8 * r
    if name == "triangle":  # apex up, base at dy = 0.8 r
        return (dy >= -r) & (dy <= 0.8 * r) & (ax <= 0.55 * (dy + r))
    if name == "cross":
        return ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r))
    if name == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if name == "bar_h":
        return (ax <= r) & (ay <= 0.3 * r)
    if name == "bar_v":
        return (ay <= r) & (ax <= 0.3 * r)
    if name == "diamond":
        return ax + ay <= r
    if name == "dots":  # four dots at (±0.55 r, ±0.55 r)
        return np.hypot(ax - 0.55 * r, ay - 0.55 * r) <= 0.3 * r
    # l_shape: a left upright and a bottom foot
    upright = (dx >= -r) & (dx <= -0.4 * r) & (ay <= r)
    return upright | ((dy >= 0.4 * r) & (dy <= r) & (ax <= r))


def make_images(n: int, seed) -> tuple[Tensor, Tensor]:
    """(x uint8 [n, 3, 32, 32], y int64 [n]); the same (n, seed) always gives the same arrays.

    ``seed``: an int or a tuple of ints (a numpy seed); see ``image_splits`` for disjoint splits.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(SHAPES))  # [n] balanced classes, seeded order
    r = rng.uniform(5.0, 10.0, n)  # half-size in px
    cx, cy = rng.uniform(r, SIZE - r), rng.uniform(r, SIZE - r)  # centres keep the shape inside
    tilt = np.deg2rad(rng.uniform(-10.0, 10.0, n))
    fg = np.clip(PALETTE[rng.integers(0, len(PALETTE), n)] + rng.normal(0, 0.05, (n, 3)), 0, 1)  # [n, 3]
    base = rng.uniform(0.0, 0.5, (n, 3))  # dim background colour
    grad_dir = rng.uniform(0, 2 * np.pi, n)
    grad_amp = rng.uniform(0.0, 0.2, n)
    speck_xy = rng.integers(0, SIZE - 1, (n, 3, 2))
    speck_size = rng.integers(1, 3, (n, 3))
    speck_rgb = rng.uniform(0, 1, (n, 3, 3))
    noise = rng.normal(0.0, 0.08, (n, 3, SIZE, SIZE))

    grid = np.arange(SIZE, dtype=np.float64) + 0.5  # pixel centres
    gy, gx = np.meshgrid(grid, grid, indexing="ij")  # [32, 32] row (y), column (x)
    cos, sin = np.cos(grad_dir)[:, None, None], np.sin(grad_dir)[:, None, None]
    u = (gx[None] - SIZE / 2) * cos + (gy[None] - SIZE / 2) * sin  # [n, 32, 32] along the gradient
    bg = base[:, :, None, None] + (grad_amp[:, None, None] * u / SIZE)[:, None]  # [n, 3, 32, 32]
    for j in range(3):  # specks: small squares of random colour
        for i in range(n):
            (sx, sy), s = speck_xy[i, j], speck_size[i, j]
            bg[i, :, sy : sy + s, sx : sx + s] = speck_rgb[i, j][:, None, None]

    mask = np.zeros((n, SIZE, SIZE), dtype=bool)
    for cls in range(len(SHAPES)):
        sel = np.flatnonzero(y == cls)
        if sel.size == 0:
            continue
        ox, oy = gx[None] - cx[sel, None, None], gy[None] - cy[sel, None, None]  # [m, 32, 32]
        c, s = np.cos(tilt[sel])[:, None, None], np.sin(tilt[sel])[:, None, None]
        mask[sel] = _shape_mask(cls, c * ox + s * oy, -s * ox + c * oy, r[sel, None, None])
    img = np.where(mask[:, None], fg[:, :, None, None], bg) + noise  # [n, 3, 32, 32]
    x = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


SPLIT_STREAMS = {"train": 0, "val": 2, "test": 1}  # numpy seed (seed, stream) of each split


def image_splits(n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Procedural train, val and test sets from disjoint seed streams (``SPLIT_STREAMS``)."""
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {name: make_images(sizes[name], (seed, stream)) for name, stream in SPLIT_STREAMS.items()}


def cut_train_val(x: Tensor, y: Tensor, n_val: int, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Train and val from one labelled set: a seeded permutation, the last ``n_val`` rows are val."""
    if not 0 <= n_val < len(x):
        raise ValueError(f"n_val={n_val} must be in [0, {len(x)}) for a set of {len(x)} images")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    tr, va = order[: len(x) - n_val], order[len(x) - n_val :]
    return {"train": (x[tr], y[tr]), "val": (x[va], y[va])}


def drop_shared(splits: dict[str, tuple[Tensor, Tensor]]) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, int]]:
    """(splits with no image in two of them, images dropped per split); splits are taken in
    order and each loses the images byte-identical to one of an earlier split."""
    seen: set[bytes] = set()
    kept, dropped = {}, {}
    for name, (x, y) in splits.items():
        rows = [bytes(r) for r in x.flatten(1).numpy()]
        keep = torch.tensor([r not in seen for r in rows], dtype=torch.bool)
        seen.update(rows)
        kept[name], dropped[name] = (x[keep], y[keep]), int((~keep).sum())
    return kept, dropped


def to_float(x: Tensor) -> Tensor:
    """uint8 [..] -> float32 in [0, 1]; float input is returned as float32 unchanged."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def to_signed(x: Tensor) -> Tensor:
    """uint8 or [0, 1] float -> float32 in [-1, 1] (the diffusion data space)."""
    return to_float(x) * 2.0 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] float -> uint8 (clamped, rounded)."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def _decode(img) -> np.ndarray:
    """One ``img`` cell -> uint8 [32, 32, 3]: a PIL image, or the raw {bytes, path} struct."""
    from PIL import Image

    if isinstance(img, dict):  # parquet read without the HF Image feature metadata
        img = Image.open(io.BytesIO(img["bytes"]))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.shape != (SIZE, SIZE, 3):
        raise ValueError(f"expected a 32×32 RGB image, got {arr.shape}")
    return arr


def load_cifar10(
    split: str = "train",
    data_files: dict | None = None,
    offline: bool = False,
    cache_dir: str | None = None,
    limit: int | None = None,
) -> tuple[Tensor, Tensor]:
    """CIFAR-10 ``split`` (train | test) as (x uint8 [N, 3, 32, 32], y int64 [N]).

    From the hub, or from ``data_files`` (split -> parquet path(s), the hub's format: columns
    ``img`` and ``label``). ``offline``: never contact the hub. ``limit``: first N rows only.
    """
    import datasets

    try:
        with hub_offline(offline):
            if data_files is not None:
                ds = datasets.load_dataset("parquet", data_files=data_files, split=split, cache_dir=cache_dir)
            else:
                ds = datasets.load_dataset(CIFAR10_HUB_PATH, split=split, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError) as err:
        if data_files is not None:
            raise
        raise RuntimeError(
            f"cannot load {CIFAR10_HUB_PATH} (hub unreachable and not cached: {err}); "
            "use the procedural images (make_images) or local parquet data_files"
        ) from err
    missing = {"img", "label"} - set(ds.column_names)
    if missing:
        raise ValueError(f"CIFAR-10 split {split!r} lacks columns {sorted(missing)}: {ds.column_names}")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    x = np.stack([_decode(im) for im in ds["img"]]) if len(ds) else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    y = np.asarray(ds["label"], dtype=np.int64)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
