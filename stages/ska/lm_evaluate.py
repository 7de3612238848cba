"""evaluate: test loss, test perplexity, throughput and peak memory of a trained cell.

Test split only: the state was chosen on validation (train stage), so test stays unseen
until here. SKA cells also report their set-attention gates σ(ρ) and the perplexity with every SKA
branch switched off: if that barely moves, the set attention is not what the model uses.
"""

from __future__ import annotations

import resource

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.ska.lm_train import build_model, lm_data, uses_ska

SPEC = StageSpec(
    name="evaluate",
    reads=("eval_batch_size",),
    needs=("tokenize", "banks", "train"),
    code=("studies.ska.train", "studies.ska.diagnostics"),
    types={"eval_batch_size": int},
    ranges={"eval_batch_size": ">= 1"},
    metrics=(
        "test_loss",
        "test_perplexity",
        "tokens_per_s",
        "test_perplexity_without_ska",
        "ska_gate_mean",
        "peak_rss_mb",
    ),
    threads=1,  # small models: two cells in parallel beat one cell on two threads
    gpus=1,
    needs_on={"banks": uses_ska},  # attention: read by train
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.diagnostics import ska_usage
    from studies.ska.train import evaluate_lm

    torch.set_num_threads(ctx.threads)
    model, config = load_trained(ctx.input("train"), lambda config: build_model(ctx, config)[0])
    model.to(ctx.device)
    data = lm_data(ctx, "test", config["seq_len"], config["attention"] == "ska")
    test = evaluate_lm(model, data, ctx.params["eval_batch_size"])
    metrics = {f"test_{k}": test[k] for k in ("loss", "perplexity", "n_tokens")}
    metrics["tokens_per_s"] = test["tokens_per_s"]
    metrics |= ska_usage(
        model, "test_perplexity", lambda: evaluate_lm(model, data, ctx.params["eval_batch_size"])["perplexity"]
    )
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        metrics["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return metrics
