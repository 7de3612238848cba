"""Figures of one built cell, drawn from its artifacts, for the cell's W&B run (``ablate cell``).

Every train stage writes ``history.json`` (a record per step) and most write ``val_history.json``
(a record per evaluation): they become a training-curve figure. SKA cells of ska_lm and ska_vit
also get the attention maps of their SKA branch on one validation example
(``studies.ska.attention_maps``), and so do the SKA cells of ska_setrecall, ska_diffusion and
ska_text_diffusion (a denoiser's example noised half-way).
"""

from __future__ import annotations

import json
from pathlib import Path

from studies.labels import axis_label

HISTORY, VAL_HISTORY = "history.json", "val_history.json"


def _is_quality(key: str) -> bool:
    """A record's key that measures the model, not the run: no step, lr, gradient norm, count
    (``n``, ``n_*``) or timing (``*_s``, ``*_per_s``)."""
    return key not in {"step", "lr", "grad_norm", "n"} and not key.startswith("n_") and not key.endswith("_s")


def _numeric(records: list[dict]) -> list[str]:
    keys = dict.fromkeys(k for r in records for k, v in r.items() if isinstance(v, (int, float)) and _is_quality(k))
    return list(keys)


def _smoothed(values: tuple[float, ...]) -> list[float]:
    """Trailing mean over 2% of the points, so a long noisy curve shows its trend."""
    width, out, total = max(1, len(values) // 50), [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def training_curves(train_dir: Path, png: Path, title: str) -> Path:
    """Losses against step (every train record, raw and smoothed, and every validation loss) on
    the left; the other validation metrics, if any, on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = json.loads((train_dir / HISTORY).read_text())
    val_path = train_dir / VAL_HISTORY
    val = json.loads(val_path.read_text()) if val_path.exists() else []
    val_keys = _numeric(val)
    other = [k for k in val_keys if "loss" not in k]
    fig, axes = plt.subplots(1, 2 if other else 1, figsize=(11 if other else 6, 4), squeeze=False)
    losses = axes[0, 0]
    for key in _numeric(train):
        steps, values = zip(*((r["step"], r[key]) for r in train if key in r), strict=True)
        (line,) = losses.plot(steps, values, lw=0.5, alpha=0.4)
        losses.plot(steps, _smoothed(values), color=line.get_color(), label=f"train {axis_label(key)}")
    for key in val_keys:
        if "loss" in key:
            label = axis_label(key if key.startswith("val") else f"val_{key}")
            losses.plot([r["step"] for r in val], [r[key] for r in val], "o-", label=label)
    losses.set(xlabel=axis_label("step"), ylabel=axis_label("loss"), title="training")
    losses.legend(fontsize=7)
    if other:
        for key in other:
            axes[0, 1].plot([r["step"] for r in val], [r[key] for r in val], "o-", label=axis_label(key))
        axes[0, 1].set(xlabel=axis_label("step"), title="validation metrics")
        axes[0, 1].legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def cell_figures(kind: str, dirs: dict[str, Path], params: dict, out: Path, title: str) -> dict[str, Path]:
    """Figures of a cell of recipe ``kind`` and ``params``, whose stages' artifact directories are
    ``dirs`` (stage name → directory), written as PNGs under ``out``; keyed by the name to log them under."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for stage, directory in dirs.items():
        if (directory / HISTORY).exists():
            figures[f"{stage}/curves"] = training_curves(directory, out / f"{stage}_curves.png", f"{title}\n{stage}")
    maps = None
    if kind == "ska_lm":
        from studies.ska.attention_maps import lm_attention_figure

        # an SDPA cell has no banks node (the figure is None for it)
        maps = lm_attention_figure(dirs["train"], dirs["tokenize"], dirs.get("banks"), out / "attention.png")
    elif kind == "ska_vit":
        from studies.ska.attention_maps import vit_attention_figure

        maps = vit_attention_figure(dirs["train"], dirs["images"], out / "attention.png")
    elif kind == "ska_setrecall":
        from studies.ska.attention_maps import setrecall_attention_figure

        maps = setrecall_attention_figure(dirs["train"], dirs["data"], params.get("hash_seed"), out / "attention.png")
    elif kind == "ska_diffusion":
        import torch

        from studies.ska.attention_maps import diffusion_attention_figure

        images = torch.load(dirs["images"] / "images.pt", weights_only=True)["val_x"]
        maps = diffusion_attention_figure(dirs["train"], images, "image", out / "attention.png")
    elif kind == "ska_text_diffusion":
        from studies.data.lm import chunk_tokens
        from studies.data.tokenizer import load_tokens
        from studies.ska.attention_maps import diffusion_attention_figure

        seq_len = json.loads((dirs["train"] / "config.json").read_text())["seq_len"]
        tokens = chunk_tokens(load_tokens(dirs["tokenize"] / "val.tokens.pt"), seq_len)[0]
        maps = diffusion_attention_figure(dirs["train"], tokens, "text", out / "attention.png")
    if maps is not None:
        figures["train/attention_maps"] = maps
    return figures
