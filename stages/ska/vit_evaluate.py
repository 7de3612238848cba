"""evaluate: top-1 accuracy (beside chance, 1 / classes) and inference throughput on the test
split; for SKA cells also top-1 with every SKA branch switched off (is set attention what the
model uses?). Only the test split is read: selection happened on val in train."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.images import load_split
from stages.common.trained import load_trained
from stages.ska.vit_train import build_model

SPEC = StageSpec(
    name="evaluate",
    reads=("eval_batch_size",),
    needs=("images", "train"),
    code=("studies.ska.vit", "studies.ska.diagnostics"),
    types={"eval_batch_size": int},
    ranges={"eval_batch_size": ">= 1"},
    metrics=("top1", "loss", "imgs_per_s", "ska_gate_mean", "top1_without_ska", "chance"),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.diagnostics import ska_usage
    from studies.ska.vit import evaluate_classifier

    torch.set_num_threads(ctx.threads)
    model, _ = load_trained(ctx.input("train"), build_model)
    model.to(ctx.device)
    x, y = load_split(ctx.input("images"), "test")
    top1 = lambda: evaluate_classifier(model, x, y, ctx.params["eval_batch_size"])["top1"]  # noqa: E731
    metrics = evaluate_classifier(model, x, y, ctx.params["eval_batch_size"])
    metrics |= ska_usage(model, "top1", top1)
    return metrics | {"chance": 1 / model.cfg.n_classes}
