"""evaluate: held-out ε-MSE at fixed timesteps, and FID of DDIM samples vs the test images;
for SKA cells also ε-MSE with every SKA branch switched off."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.ska.diffusion_train import build_model

SPEC = StageSpec(
    name="evaluate",
    reads=("n_fid_samples", "ddim_steps", "eval_seed"),
    needs=("images", "fid_features", "train"),
    code=("studies.ska.diffusion", "studies.ska.fid", "studies.ska.diagnostics"),
)


def run(ctx: Context) -> dict:
    import torch

    from studies.data.images import to_uint8
    from studies.ska.diagnostics import ska_usage
    from studies.ska.diffusion import ddim_sample, eps_mse
    from studies.ska.fid import FeatureNet, fid

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    model, _ = load_trained(ctx.input("train"), build_model)
    test = torch.load(ctx.input("images") / "images.pt", weights_only=True)["test_x"]
    metrics = eps_mse(model, test, seed=p["eval_seed"])
    metrics |= ska_usage(model, "eps_mse", lambda: eps_mse(model, test, seed=p["eval_seed"])["eps_mse"])
    net = FeatureNet()
    net.load_state_dict(torch.load(ctx.input("fid_features") / "feature_net.pt", weights_only=True))
    samples = to_uint8(ddim_sample(model, p["n_fid_samples"], steps=p["ddim_steps"], seed=p["eval_seed"]))
    torch.save(samples[:64], ctx.out / "samples.pt")
    metrics["fid_in_pipeline_net"] = fid(net.eval(), test[: p["n_fid_samples"]], samples)
    return metrics
