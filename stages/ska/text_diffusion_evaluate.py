"""evaluate: held-out ε-MSE at fixed timesteps, and token recovery at fixed noise levels.

Test-split sequences only (content-disjoint from train; the state was chosen on val).
ε-MSE follows the image study's protocol (``eps_mse``: five timesteps over the schedule,
seeded noise). Token recovery rounds the one-step x̂_0 (from x_t and ε̂) to the nearest
embedding row at t/T = 0.25, 0.5, 0.75, next to the no-model baseline of rounding x_t
itself (``studies.ska.text_diffusion``). SKA cells also report ε-MSE with every SKA branch switched off.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.ska.text_diffusion_train import build_model, token_sequences

SPEC = StageSpec(
    name="evaluate",
    reads=("eval_seed",),
    needs=("tokenize", "train"),
    code=("studies.ska.diffusion", "studies.ska.text_diffusion", "studies.ska.diagnostics"),
    types={"eval_seed": int},
    metrics=(
        *("test_eps_mse", "test_token_acc", "test_token_acc_noisy", "seqs_per_s"),
        *("ska_gate_mean", "test_eps_mse_without_ska"),
    ),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import torch

    from studies.ska.diagnostics import ska_usage
    from studies.ska.diffusion import eps_mse
    from studies.ska.text_diffusion import token_accuracy

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    model, config = load_trained(ctx.input("train"), build_model)
    model.to(ctx.device)
    test = token_sequences(ctx, "test", config["seq_len"])
    metrics = eps_mse(model, test, seed=p["eval_seed"])
    seqs_per_s = metrics.pop("imgs_per_s")  # denoiser calls per second
    metrics |= token_accuracy(model, test, seed=p["eval_seed"])
    metrics = {f"test_{k}": v for k, v in metrics.items()}
    metrics |= ska_usage(model, "test_eps_mse", lambda: eps_mse(model, test, seed=p["eval_seed"])["eps_mse"])
    return {**metrics, "seqs_per_s": seqs_per_s, "test_sequences": len(test)}
