"""evaluate: set-recall scores of a trained cell on val (for choosing) and test (to report).

recall_acc / recall_nll score only the copy-window tokens the query window lacks: those only
a lookup of the max-overlap earlier window predicts. Beside them: the chance and oracle
floors, and for SKA cells the same scores with every SKA branch switched off and the gates.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import load_trained
from stages.ska.setrecall_train import split_data

SPEC = StageSpec(
    name="evaluate",
    reads=("eval_batch_size", "hash_seed"),
    needs=("data", "train"),
    code=("studies.ska.synthetic", "studies.ska.diagnostics"),
    types={"eval_batch_size": int, "hash_seed": int},
    ranges={"eval_batch_size": ">= 1"},
    metrics=(
        *(f"{split}_{m}" for split in ("val", "test") for m in ("loss", "copy_nll", "recall_nll", "recall_acc")),
        *(f"{split}_recall_{m}_without_ska" for split in ("val", "test") for m in ("nll", "acc")),
        *("ska_gate_mean", "recall_nll_oracle", "recall_nll_chance", "chance"),
    ),
    threads=1,
    gpus=1,
)


def run(ctx: Context) -> dict:
    import json

    import torch

    from studies.ska.diagnostics import set_gates, without_set_attention
    from studies.ska.model import CausalLM, LMConfig
    from studies.ska.synthetic import SetRecallConfig, evaluate_recall, floors

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    cfg = SetRecallConfig(**json.loads((ctx.input("data") / "config.json").read_text()))
    model, config = load_trained(ctx.input("train"), lambda c: CausalLM(LMConfig(**c)))
    model.to(ctx.device)
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        tokens, data = split_data(ctx, split, config, p["hash_seed"])
        scores = evaluate_recall(model, cfg, tokens, data, p["eval_batch_size"])
        metrics |= {f"{split}_{k}": v for k, v in scores.items()}
        if set_gates(model):
            with without_set_attention(model):
                off = evaluate_recall(model, cfg, tokens, data, p["eval_batch_size"])
            metrics |= {f"{split}_{k}_without_ska": v for k, v in off.items() if k.startswith("recall")}
    gates = set_gates(model)
    if gates:
        metrics["ska_gate_mean"] = sum(gates) / len(gates)
    test_tokens = torch.load(ctx.input("data") / "test.pt", weights_only=True)
    return metrics | floors(cfg, test_tokens)  # chance: the recall_acc reference line of the report
