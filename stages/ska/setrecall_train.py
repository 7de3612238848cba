"""train: one causal LM per cell on the set-recall sequences (ska_lm's model and trainer).

The model keys are ska_lm's (``lm_train.MODEL_KEYS``) but ``seq_len``, which the data fixes;
``attention: none`` (conv and MLP only) is the trained SKA-off control. The kept state is
the one of least loss on ``val_seqs`` validation sequences (test is never read here).
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec
from stages.common.trained import final_loss, save_trained
from stages.ska.lm_train import MODEL_KEYS, TRAIN_KEYS, loop_of, uses_ska
from stages.ska.lm_train import SPEC as LM_TRAIN

KEYS = tuple(k for k in MODEL_KEYS if k != "seq_len")

SPEC = StageSpec(
    name="train",
    reads=(*KEYS, *TRAIN_KEYS, "hash_seed"),
    needs=("data",),
    code=("studies.ska.model", "studies.ska.train", "studies.ska.synthetic"),
    choices=LM_TRAIN.choices,
    types={**{k: v for k, v in LM_TRAIN.types.items() if k in KEYS + TRAIN_KEYS}, "hash_seed": int},
    ranges={k: v for k, v in LM_TRAIN.ranges.items() if k in KEYS + TRAIN_KEYS},
    checks=LM_TRAIN.checks,
    metrics=LM_TRAIN.metrics,
    threads=1,
    gpus=1,
    applies={**LM_TRAIN.applies, "hash_seed": uses_ska},  # SKA's keys: an SDPA or none cell lacks them
)


def split_data(ctx: Context, split: str, config: dict, hash_seed: int):
    """(tokens [N, length], LMData with the bank over its inputs when the model is SKA)."""
    import torch

    from studies.ska.synthetic import lm_data

    tokens = torch.load(ctx.input("data") / f"{split}.pt", weights_only=True)
    c = config  # only an SKA cell's config has the bank's keys
    ska = c["attention"] == "ska"
    data = lm_data(tokens, c.get("window"), c.get("stride"), c.get("minhash_k"), hash_seed, c["vocab_size"], ska)
    return tokens, data


def run(ctx: Context) -> dict:
    import json

    import torch

    from studies.ska.model import CausalLM, LMConfig
    from studies.ska.train import train_lm

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    data_cfg = json.loads((ctx.input("data") / "config.json").read_text())
    config = {k: p[k] for k in KEYS if k in p} | {"vocab_size": data_cfg["n_atoms"]}
    config["seq_len"] = data_cfg["set_size"] * (data_cfg["n_memory"] + 2 * data_cfg["n_queries"]) - 1
    torch.manual_seed(p["train_seed"])  # initial weights
    model = CausalLM(LMConfig(**config)).to(ctx.device)
    cfg = loop_of(p)
    hash_seed = p.get("hash_seed")  # None for a cell without sets (no bank)
    val = split_data(ctx, "val", config, hash_seed)[1].spaced(p["val_seqs"])
    result = train_lm(model, split_data(ctx, "train", config, hash_seed)[1], cfg, val)
    history = result.history["train"]
    save_trained(ctx.out, model, config, history)
    (ctx.out / "val_history.json").write_text(json.dumps(result.history["eval"]))
    return {
        "n_params": model.n_params(),
        "train_loss": final_loss(history),
        "train_s": history[-1]["time_s"],
        "val_loss": result.best["val_loss"],  # of the kept state (least val loss)
        "best_step": result.best["step"],  # still improving when it is the last step
        "steps": p["steps"],
    }
