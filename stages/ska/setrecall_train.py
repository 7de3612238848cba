"""train: one causal LM per cell on the set-recall sequences (ska_lm's model and trainer).

The model keys are ska_lm's (``lm_train.MODEL_KEYS``) but ``seq_len``, which the data fixes;
``attention: none`` (conv and MLP only) is the trained SKA-off control.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained
from stages.ska.lm_train import MODEL_KEYS, TRAIN_KEYS
from stages.ska.lm_train import SPEC as LM_TRAIN

KEYS = tuple(k for k in MODEL_KEYS if k != "seq_len")

SPEC = StageSpec(
    name="train",
    reads=(*KEYS, *TRAIN_KEYS, "hash_seed"),
    needs=("data",),
    code=("studies.ska.model", "studies.ska.train", "studies.ska.synthetic"),
    choices=LM_TRAIN.choices,
    threads=1,
)


def split_data(ctx: Context, split: str, config: dict, hash_seed: int):
    """(tokens [N, length], LMData with the bank over its inputs when the model is SKA)."""
    import torch

    from studies.ska.synthetic import lm_data

    tokens = torch.load(ctx.input("data") / f"{split}.pt", weights_only=True)
    c = config
    data = lm_data(
        tokens, c["window"], c["stride"], c["minhash_k"], hash_seed, c["vocab_size"], c["attention"] == "ska"
    )
    return tokens, data


def run(ctx: Context) -> dict:
    import json

    import torch

    from studies.ska.model import CausalLM, LMConfig
    from studies.ska.train import LMBatches, train_lm

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    data_cfg = json.loads((ctx.input("data") / "config.json").read_text())
    config = {k: p[k] for k in KEYS} | {"vocab_size": data_cfg["n_atoms"]}
    config["seq_len"] = data_cfg["set_size"] * (data_cfg["n_memory"] + 2 * data_cfg["n_queries"]) - 1
    torch.manual_seed(p["train_seed"])  # initial weights
    model = CausalLM(LMConfig(**config))
    _, data = split_data(ctx, "train", config, p["hash_seed"])
    history = train_lm(
        model,
        LMBatches(data, p["batch_size"]),
        p["steps"],
        p["lr"],
        p["warmup_steps"],
        p["weight_decay"],
        p["grad_clip"],
        p["train_seed"],
    )
    save_trained(ctx.out, model, config, history)
    return {"n_params": model.n_params(), "train_loss": final_loss(history), "train_s": history[-1]["time_s"]}
