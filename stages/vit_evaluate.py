"""evaluate: top-1 accuracy and inference throughput on the held-out images."""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec
from stages.vit_train import build_model, load_images

SPEC = StageSpec(name="evaluate", reads=("eval_batch_size",), needs=("images", "train"), code=("studies.ska.vit",))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.vit import evaluate_classifier

    torch.set_num_threads(ctx.threads)
    train = ctx.input("train")
    model = build_model(json.loads((train / "config.json").read_text()))
    model.load_state_dict(torch.load(train / "model.pt", weights_only=True))
    x, y = load_images(ctx, "test")
    return evaluate_classifier(model, x, y, ctx.params["eval_batch_size"]) | {"chance": 1 / (int(y.max()) + 1)}
