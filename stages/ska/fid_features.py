"""fid_features: the small CNN whose features define FID, trained once on the train images.

Documented as such in every report: this is FID with an in-pipeline feature net, not the
Inception-v3 FID of the literature (no Inception weights are reachable offline).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="fid_features", reads=("fid_steps", "fid_seed"), needs=("images",), code=("studies.ska.fid",))


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.fid import train_feature_net

    torch.set_num_threads(ctx.threads)
    data = torch.load(ctx.input("images") / "images.pt", weights_only=True)
    net = train_feature_net(
        data["train_x"], data["train_y"], steps=ctx.params["fid_steps"], seed=ctx.params["fid_seed"]
    )
    torch.save(net.state_dict(), ctx.out / "feature_net.pt")
    with torch.no_grad():
        acc = (net(data["test_x"]).argmax(-1) == data["test_y"]).float().mean().item()
    return {"feature_net_test_top1": acc}
