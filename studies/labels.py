"""What a reader sees for a column or a series: an axis label with its unit instead of the raw
column name (the CSVs keep the exact names; plots use these), and a legend name per backend.

``axis_label`` reads ``LABELS`` first; a column not in it is derived from its parts (``test_`` /
``val_`` prefix, ``_without_ska`` suffix, ``_t<k>`` timestep), and an unknown name is spelt out
with spaces rather than shown raw.
"""

from __future__ import annotations

import re

FRACTION = "(fraction, 0–1)"
LABELS = {
    # accuracies and rates
    "top1": f"top-1 accuracy {FRACTION}",
    "acc": f"path accuracy {FRACTION}",
    "opt": f"optimal-path rate {FRACTION}",
    "exact_opt": f"exactly optimal rate {FRACTION}",
    "junction_acc": f"junction accuracy {FRACTION}",
    "len_ratio": "path length / optimal length (ratio)",
    "cell_acc": f"blank-cell accuracy {FRACTION}",
    "cell_acc_all81": f"accuracy over all 81 cells {FRACTION}",
    "grid_acc": f"solved-grid rate {FRACTION}",
    "blank_acc": f"blank-cell accuracy {FRACTION}",
    "puzzle_acc": f"solved-puzzle rate {FRACTION}",
    "langevin_blank_acc": f"Langevin blank-cell accuracy {FRACTION}",
    "langevin_puzzle_acc": f"Langevin solved-puzzle rate {FRACTION}",
    "z_zero_blank_acc": f"z = 0 blank-cell accuracy {FRACTION}",
    "z_zero_puzzle_acc": f"z = 0 solved-puzzle rate {FRACTION}",
    "langevin_gain": "Langevin − z = 0 blank-cell accuracy (fraction)",
    "recall_acc": f"recall accuracy {FRACTION}",
    "token_acc": f"token accuracy {FRACTION}",
    # losses and errors
    "perplexity": "perplexity (lower is better)",
    "loss": "loss (the training objective)",
    "train_loss": "train loss (the training objective)",
    "eps_mse": "ε-prediction MSE (lower is better)",
    "fid_in_pipeline_net": "FID, in-pipeline features (lower is better)",
    "recall_nll": "recall NLL (nats)",
    "z_max_abs_err": "max |z − z_ref|",
    "z_max_rel_err": "max relative error of z",
    # floors
    "chance": f"chance {FRACTION}",
    "candidate_uniform": f"uniform guess among candidates {FRACTION}",
    "random_acc": f"random-score roll-out accuracy {FRACTION}",
    "random_opt": f"random-score roll-out optimal rate {FRACTION}",
    # sizes, counts, speed
    "n_params": "trainable parameters (count)",
    "step": "training step",
    "steps": "training steps",
    "L": "sequence length L (tokens)",
    "steps_per_s": "steps per second (steps/s)",
    "ms_per_step": "time per step (ms)",
    "peak_mem_mb": "peak memory (MB)",
    "peak_rss_mb": "peak resident memory (MB)",
    "tokens_per_s": "throughput (tokens/s)",
    "imgs_per_s": "throughput (images/s)",
    "seqs_per_s": "throughput (sequences/s)",
    "train_s": "training time (s)",
    "wall_s": "wall time (s)",
    # params on x axes
    "minhash_k": "MinHash signature length k",
    "window": "window (tokens)",
    "stride": "stride (tokens)",
    "langevin_steps": "Langevin steps",
    "langevin_chains": "Langevin chains",
    "lr": "learning rate",
    "size": "model size",
}
SPLITS = {"test_": "test ", "val_": "validation ", "best_val_": "best validation ", "final_val_": "final validation "}
# legend names of benchmark and parity backends: what each series is, not its raw value
SERIES = {
    "python": "SKA python",
    "keops": "SKA keops",
    "triton": "SKA triton",
    "sdpa": "SDPA",
    "naive": "naive softmax attention",
}


def axis_label(column: str) -> str:
    """A human label with its unit for ``column`` (a metric, floor, count or param name)."""
    if column in LABELS:
        return LABELS[column]
    for prefix, word in SPLITS.items():
        if column.startswith(prefix) and column[len(prefix) :]:
            return word + axis_label(column[len(prefix) :])
    if column.endswith("_without_ska"):
        return axis_label(column.removesuffix("_without_ska")) + ", SKA branches off"
    timestep = re.fullmatch(r"(.+)_t(\d+)", column)
    if timestep:
        return f"{axis_label(timestep[1])} at diffusion step {timestep[2]}"
    return column.replace("_", " ")


def short_label(column: str) -> str:
    """``axis_label`` without its unit, for titles and delta axes."""
    return re.sub(r" \((fraction, 0–1|count|lower is better)\)$", "", axis_label(column))


def series_label(values: dict[str, object]) -> str:
    """A legend entry for one series of a line plot: its values, a backend by its name
    (``SKA python fp32, block``), other params as ``name = value``."""
    parts = []
    for key, value in values.items():
        if key == "backend":
            parts.append(SERIES.get(str(value), str(value)))
        elif key in ("precision", "scope"):
            parts.append(str(value))
        else:
            parts.append(f"{key.replace('_', ' ')} = {value}")
    head = " ".join(p for k, p in zip(values, parts, strict=True) if k in ("backend", "precision"))
    rest = [p for k, p in zip(values, parts, strict=True) if k not in ("backend", "precision")]
    return ", ".join(([head] if head else []) + rest)
