"""evaluate: ε-MSE at fixed timesteps on the test split, and FID of DDIM samples vs test
images beside its floor ``fid_real_vs_real`` (test[:n] vs the disjoint test[n:2n], the same
n and feature net: what a perfect generator would score); for SKA cells also ε-MSE with every
SKA branch switched off. Only the test split is read: selection happened on val in train."""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.images import load_split
from stages.common.trained import load_trained
from stages.ska.diffusion_train import build_model

SPEC = StageSpec(
    name="evaluate",
    reads=("n_fid_samples", "ddim_steps", "eval_seed"),
    needs=("images", "fid_features", "train"),
    code=("studies.ska.diffusion", "studies.ska.fid", "studies.ska.diagnostics"),
    types=dict.fromkeys(("n_fid_samples", "ddim_steps", "eval_seed"), int),
    ranges={"n_fid_samples": ">= 2", "ddim_steps": ">= 1"},
    metrics=(
        *("eps_mse", "imgs_per_s", "ska_gate_mean", "eps_mse_without_ska"),
        *("fid_in_pipeline_net", "fid_real_vs_real"),
    ),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import torch

    from studies.data.images import to_uint8
    from studies.ska.diagnostics import ska_usage
    from studies.ska.diffusion import ddim_sample, eps_mse
    from studies.ska.fid import FeatureNet, fid, real_vs_real_fid

    torch.set_num_threads(ctx.threads)
    p, n = ctx.params, ctx.params["n_fid_samples"]
    model, _ = load_trained(ctx.input("train"), build_model)
    model.to(ctx.device)
    test = load_split(ctx.input("images"), "test")[0]
    if len(test) < 2 * n:
        raise ValueError(f"n_fid_samples={n} needs n_test >= {2 * n} (the FID floor compares two halves)")
    metrics = eps_mse(model, test, seed=p["eval_seed"])
    metrics |= ska_usage(model, "eps_mse", lambda: eps_mse(model, test, seed=p["eval_seed"])["eps_mse"])
    net = FeatureNet()
    net.load_state_dict(torch.load(ctx.input("fid_features") / "feature_net.pt", map_location="cpu", weights_only=True))
    net.to(ctx.device).eval()
    samples = to_uint8(ddim_sample(model, n, steps=p["ddim_steps"], seed=p["eval_seed"])).cpu()
    torch.save(samples[:64], ctx.out / "samples.pt")
    metrics["fid_in_pipeline_net"] = fid(net, test[:n], samples)
    metrics["fid_real_vs_real"] = real_vs_real_fid(net, test, n)
    return metrics | {"n_test": len(test), "n_fid_samples": n}
