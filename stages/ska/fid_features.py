"""fid_features: the small CNN whose features define FID, trained once on the train images;
its accuracy is reported on val (the test split is left to evaluate).

Documented as such in every report: this is FID with an in-pipeline feature net, not the
Inception-v3 FID of the literature (no Inception weights are reachable offline).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.images import load_split
from stages.common.trained import cpu_state

SPEC = StageSpec(
    name="fid_features",
    reads=("fid_steps", "fid_seed"),
    needs=("images",),
    code=("studies.ska.fid",),
    gpus=1,
    types={"fid_steps": int, "fid_seed": int},
    ranges={"fid_steps": ">= 1"},
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.fid import train_feature_net

    torch.set_num_threads(ctx.threads)
    x, y = load_split(ctx.input("images"), "train")
    net = train_feature_net(x, y, steps=ctx.params["fid_steps"], seed=ctx.params["fid_seed"], device=ctx.device)
    torch.save(cpu_state(net), ctx.out / "feature_net.pt")
    x_val, y_val = load_split(ctx.input("images"), "val")
    with torch.no_grad():
        acc = (net(x_val.to(ctx.device)).argmax(-1).cpu() == y_val).float().mean().item()
    return {"feature_net_val_top1": acc}
