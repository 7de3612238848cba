"""Tiny ViT classifier whose token mixing is SDPA or banked set kernel attention (SKA).

ViT (Dosovitskiy et al., 2021) at toy scale: patch-4 embedding of a 32×32 image (64 tokens),
learned positions, pre-LN blocks, final LN, mean pool (default) or CLS token, linear head.
The two variants differ only in the token-mixing part of a block:

    sdpa block:  [x += DWConv3x3(LN x)];  x += SelfAttention(LN x) (non-causal)   x += MLP(LN x)
    ska  block:  [x += DWConv3x3(LN x)];  x += SKA(LN x, bank)                    x += MLP(LN x)

SKA reuses ``model.SetKernelAttention`` with ``causal=False``: every set attends to every
set and every token routes over every set. Image atoms (docs/studies.md, SKA): one per patch, id =
2·patch_index + [mean(patch) > 0.5] (vocabulary 2·n_patches); sets are windows over the patch
sequence in raster order (patch 4, window 8, stride 4 → 15 sets). ``ViT.bank`` builds the bank
from the image the model reads; the diffusion denoisers reuse ``Encoder`` with banks of x_t.

Local mixer: ``conv`` is a depthwise 3×3 convolution over the 8×8 patch grid (1-D width
3 for text), the non-causal counterpart of the LM's causal conv. ``mixer="auto"`` (default)
follows the LM: conv in SKA blocks, none in SDPA blocks (a standard ViT); ``conv``/``none``
force it for both, e.g. SDPA+conv as the control that separates the conv's locality prior
from SKA. Without it SKA's only cross-token signal is what the set features carry: atom ids,
i.e. one brightness bit per patch. Mean pool is the default because a CLS token owns no
patch (no atom, in no set); ``pool="cls"`` is offered and the CLS token routes over sets.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.images import to_float
from ..train_loop import LoopResult, loop_config, train
from .banks import Bank, PaddedBank, add_signatures, build_bank
from .model import MLP, CausalSelfAttention, LMConfig, SetKernelAttention

MIXERS, POOLS = ("auto", "conv", "none"), ("mean", "cls")  # local mixers; ViT poolings


@dataclass
class BackboneConfig:
    """Fields shared by the ViT and the diffusion denoisers (see LMConfig for the SKA ones)."""

    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4  # sdpa heads
    d_ff: int | None = None  # None: 4 · d_model
    dropout: float = 0.0
    attention: str = "ska"  # ska | sdpa
    mixer: str = "auto"  # auto (conv for ska, none for sdpa) | conv | none
    window: int = 8  # atoms (patches / positions) per set
    stride: int = 4
    minhash_k: int = 64
    router_topk: int = 0
    adapter_rank: int = 0
    score_mode: str = "delta_plus_dot"
    gamma: float = 0.3
    beta: float | None = None  # None: 1 / d_model
    tau: float = 1.0
    eta: float = 1.0
    backend: str = "python"
    hash_seed: int = 0  # MinHash coefficients

    @property
    def local_mixer(self) -> str:
        return ("conv" if self.attention == "ska" else "none") if self.mixer == "auto" else self.mixer

    def layer_config(self, n_atoms: int, n_tokens: int) -> LMConfig:
        """The LMConfig that parameterizes the shared layers (MLP, attention, SKA)."""
        keep = {f.name for f in fields(LMConfig)} - {"vocab_size", "seq_len", "mixer"}
        kw = {k: v for k, v in asdict(self).items() if k in keep}
        return LMConfig(vocab_size=n_atoms, seq_len=n_tokens, **kw)

    def _validate(self, ints: tuple[str, ...], choices: dict, n_atoms: int, n_tokens: int) -> None:
        """Errors name the field: ``ints`` must be ints >= 1, ``choices`` maps field -> allowed."""
        name = type(self).__name__
        for f, low in [(f, 1) for f in ints] + [("hash_seed", 0)]:
            if not isinstance(getattr(self, f), int) or getattr(self, f) < low:
                raise ValueError(f"{name}.{f}={getattr(self, f)!r}: need int >= {low}")
        for f, allowed in {"mixer": MIXERS, **choices}.items():
            if getattr(self, f) not in allowed:
                raise ValueError(f"{name}.{f}={getattr(self, f)!r}; allowed: {', '.join(allowed)}")
        if getattr(self, "image_size", 1) % getattr(self, "patch", 1):
            raise ValueError(f"{name}.patch={self.patch} does not divide image_size={self.image_size}")
        try:  # LMConfig's checks, reported under this config's name
            self.layer_config(n_atoms, n_tokens)
        except ValueError as err:
            raise ValueError(str(err).replace("LMConfig.", f"{name}.", 1)) from None


@dataclass
class ViTConfig(BackboneConfig):
    image_size: int = 32
    patch: int = 4
    channels: int = 3
    n_classes: int = 10
    pool: str = "mean"  # mean | cls

    def __post_init__(self):
        ints, n = ("image_size", "patch", "channels", "n_classes"), self.n_patches
        self._validate(ints, {"pool": POOLS}, 2 * n, n + (self.pool == "cls"))

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def n_patches(self) -> int:
        return self.grid**2


def patchify(x: Tensor, patch: int) -> Tensor:
    """[B, C, H, W] -> [B, (H/p)·(W/p), C·p·p], patches in raster order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // patch) * (W // patch), C * patch * patch)


def unpatchify(t: Tensor, patch: int, channels: int, size: int) -> Tensor:
    """Inverse of ``patchify``: [B, N, C·p·p] -> [B, C, size, size]."""
    B, g = t.shape[0], size // patch
    t = t.reshape(B, g, g, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(B, channels, size, size)


def patch_atoms(x: Tensor, patch: int, threshold: float = 0.5) -> Tensor:
    """Atom ids [B, n_patches] = 2·patch_index + [mean(patch) > threshold].

    ``x``: uint8 (scaled to [0, 1]) or float [B, C, H, W]; use threshold 0.5 for [0, 1]
    images and 0.0 for [-1, 1] ones (the same cut).
    """
    x = to_float(x)
    bright = F.avg_pool2d(x, patch).mean(1).flatten(1) > threshold  # [B, n_patches]
    return 2 * torch.arange(bright.shape[1], device=x.device) + bright.long()


def atom_bank(atoms: Tensor, n_atoms: int, window: int, stride: int, k: int, seed: int) -> Bank:
    """Window-set bank with MinHash signatures over atom ids [B, L] (vocab ``n_atoms``)."""
    return add_signatures(build_bank(atoms.cpu(), window, stride), k=k, seed=seed, vocab_size=n_atoms)


class LocalMixer(nn.Module):
    """Depthwise width-3 conv over the token grid (2-D patches, 1-D text), non-causal. Default init:
    unlike the LM's width-32 conv, zero init here measured worse (ViT top-1 0.49 vs 0.88)."""

    def __init__(self, d: int, grid: tuple[int, ...]):
        super().__init__()
        self.grid = grid
        self.conv = (nn.Conv2d if len(grid) == 2 else nn.Conv1d)(d, d, 3, padding=1, groups=d)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, D]; extra leading tokens (CLS) get 0
        (B, L, D), n = x.shape, math.prod(self.grid)
        y = self.conv(x[:, L - n :].transpose(1, 2).reshape(B, D, *self.grid))  # [B, D, *grid]
        return F.pad(y.reshape(B, D, n).transpose(1, 2), (0, 0, L - n, 0))


class Block(nn.Module):
    def __init__(self, lc: LMConfig, attention: str, mixer: str, grid: tuple[int, ...]):
        super().__init__()
        D = lc.d_model
        self.ska = attention == "ska"
        self.norm_mix, self.mix = (nn.LayerNorm(D), LocalMixer(D, grid)) if mixer == "conv" else (None, None)
        if self.ska:
            self.norm_set, self.sets = nn.LayerNorm(D), SetKernelAttention(lc, causal=False)
        else:
            self.norm_att, self.att = nn.LayerNorm(D), CausalSelfAttention(lc, causal=False)
        self.norm_mlp, self.mlp = nn.LayerNorm(D), MLP(lc)

    def forward(self, x: Tensor, e: Tensor | None, pb: PaddedBank | None) -> Tensor:
        if self.mix is not None:
            x = x + self.mix(self.norm_mix(x))
        x = x + (self.sets(self.norm_set(x), e, pb) if self.ska else self.att(self.norm_att(x)))
        return x + self.mlp(self.norm_mlp(x))


class Encoder(nn.Module):
    """Non-causal block stack + final LN; SKA owns the atom table shared by all its layers."""

    def __init__(self, cfg: BackboneConfig, n_atoms: int, n_tokens: int, grid: tuple[int, ...]):
        super().__init__()
        self.cfg, lc = cfg, cfg.layer_config(n_atoms, n_tokens)
        self.atoms = nn.Embedding(n_atoms, cfg.d_model) if cfg.attention == "ska" else None
        self.blocks = nn.ModuleList(Block(lc, cfg.attention, cfg.local_mixer, grid) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, bank: Bank | PaddedBank | None) -> Tensor:  # [B, L, D]
        e = pb = None
        if self.atoms is not None:
            if bank is None:
                raise ValueError("attention='ska' needs a bank built from the model input")
            pb = bank.to(x.device).padded() if isinstance(bank, Bank) else bank
            if pb.sig.shape[0] != x.shape[0] or pb.sig.shape[-1] != self.cfg.minhash_k:
                raise ValueError(f"bank {tuple(pb.sig.shape)} does not fit batch {x.shape[0]}, k={self.cfg.minhash_k}")
            e = self.atoms(pb.atoms)  # [B, S, W, D]
        for block in self.blocks:
            x = block(x, e, pb)
        return self.norm(x)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg, D = cfg, cfg.d_model
        self.embed = nn.Linear(cfg.channels * cfg.patch**2, D)
        self.pos = nn.Parameter(torch.zeros(cfg.n_patches, D))
        self.cls = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "cls" else None
        self.encoder = Encoder(cfg, 2 * cfg.n_patches, cfg.n_patches + (cfg.pool == "cls"), (cfg.grid, cfg.grid))
        self.head = nn.Linear(D, cfg.n_classes)
        self.apply(init_weights)
        nn.init.normal_(self.pos, std=0.02)

    def n_params(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def bank(self, images: Tensor) -> Bank:
        """The SKA bank of ``images`` (uint8 or [0, 1] float [B, C, H, W])."""
        c = self.cfg
        atoms = patch_atoms(images, c.patch, threshold=0.5)
        return atom_bank(atoms, 2 * c.n_patches, c.window, c.stride, c.minhash_k, c.hash_seed)

    def forward(self, images: Tensor, bank: Bank | PaddedBank | None = None) -> Tensor:
        """images uint8 or [0, 1] float [B, C, H, W] -> logits [B, n_classes]."""
        x = to_float(images) * 2.0 - 1.0
        h = self.embed(patchify(x, self.cfg.patch)) + self.pos  # [B, N, D]
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], 1)  # [B, 1 + N, D]
        if self.encoder.atoms is not None and bank is None:
            bank = self.bank(images)
        h = self.encoder(h, bank)
        return self.head(h[:, 0] if self.cls is not None else h.mean(1))


def fit_seconds(result: LoopResult) -> dict:
    """train_s (optimisation only) and eval_s (the periodic validation passes) of a loop run."""
    at = {r["step"]: r["time_s"] for r in result.history["train"]}
    eval_s = sum(e["time_s"] - at[e["step"]] for e in result.history["eval"])
    return {"train_s": result.wall_s - eval_s, "eval_s": eval_s}


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    val: tuple[Tensor, Tensor] | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    weight_decay: float = 0.05,
    grad_clip: float = 1.0,
    eval_every: int = 0,
    eval_batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> LoopResult:
    """Train in place on (x, y) with ``studies.train_loop`` (warm-up, cosine to lr/10, AdamW).

    With ``val`` = (x_val, y_val), val top-1 is measured every ``eval_every`` steps and at the
    end, and the best state on it is restored; without it the last state is kept.
    """
    device = next(model.parameters()).device
    cfg = loop_config(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
        grad_clip=grad_clip, eval_every=eval_every, target="top1" if val is not None else (), seed=seed,
    )  # fmt: skip

    def make_batch(idx, rng):
        idx = torch.from_numpy(idx)
        return x[idx].to(device), y[idx].to(device)

    def loss_fn(m, batch, step):
        return F.cross_entropy(m(batch[0]), batch[1]), {}

    evaluate = None if val is None else (lambda m: evaluate_classifier(m, *val, eval_batch_size))
    return train(model, len(x), make_batch, loss_fn, cfg, evaluate, progress=progress, desc="vit")


@torch.no_grad()
def evaluate_classifier(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> dict:
    """top1, loss (mean CE), imgs_per_s (inference, banks included), n over all of (x, y)."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    correct, total, t0 = 0, 0.0, time.perf_counter()
    for lo in range(0, len(x), batch_size):
        logits = model(x[lo : lo + batch_size].to(device))
        target = y[lo : lo + batch_size].to(device)
        correct += int((logits.argmax(-1) == target).sum())
        total += float(F.cross_entropy(logits, target, reduction="sum"))
    seconds = time.perf_counter() - t0
    model.train(was_training)
    n = max(len(x), 1)
    return {"top1": correct / n, "loss": total / n, "imgs_per_s": len(x) / max(seconds, 1e-9), "n": len(x)}
