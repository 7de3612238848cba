"""train: one translator per cell between the frozen LMs (studies.bridge.train.train_translator).

Selection sees the VALIDATION split only: every ``eval_every`` steps the translator's bridged
accuracy on val (official GSM8K extractor for arith, SQuAD EM for two-hop) is recorded; with
``stability`` (InfoNCE + early stopping with the best state kept + decoding hygiene, one switch)
the best state is kept, without it the last (the source's baseline, on which collapse, peak −
final, is measured). Test examples are never read here.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec

TRANSLATOR_KEYS = ("n_soft_tokens", "translator_width", "translator_depth", "translator_heads")
TRAIN_KEYS = ("steps", "batch_size", "lr", "warmup", "eval_every", "max_new", "stability", "train_seed")
INTS = ("n_soft_tokens", "translator_width", "translator_depth", "translator_heads", "steps", "batch_size")

SPEC = StageSpec(
    name="train",
    reads=("task", *TRANSLATOR_KEYS, *TRAIN_KEYS, "eval_batch_size"),
    needs=("bridge_data", "lms"),
    code=("studies.bridge.train", "studies.bridge.bridged", "studies.bridge.translator", "stages.bridge.handover"),
    choices={"task": ("arith", "twohop")},
    types={
        **dict.fromkeys((*INTS, "warmup", "eval_every", "max_new", "train_seed", "eval_batch_size"), int),
        "lr": float,
        "stability": bool,
    },
    ranges={
        **dict.fromkeys((*INTS, "eval_every", "max_new"), ">= 1"),
        "eval_batch_size": ">= 2",  # the shuffled control swaps soft tokens within a batch
        "warmup": ">= 0",
        "lr": "> 0",
    },
    checks={
        "translator_width is a multiple of translator_heads": lambda translator_width, translator_heads: (
            translator_width % translator_heads == 0
        ),
        "stability needs batch_size >= 2 (InfoNCE negatives)": lambda stability, batch_size: (
            not stability or batch_size >= 2
        ),
    },
    metrics=("val_peak", "val_final"),
    gpus=1,
)


def run(ctx: Context) -> dict:
    import torch

    from stages.bridge.handover import (
        answers,
        load_examples,
        load_lms,
        load_tokenizers,
        make_bridge,
        score,
        tokenise,
        translator_config,
    )
    from stages.common.trained import save_trained
    from studies.bridge.train import TrainConfig, train_translator
    from studies.bridge.translator import Translator

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    data = ctx.input("bridge_data")
    tok_a, tok_b = load_tokenizers(data)
    lm_a, lm_b, _ = load_lms(ctx.input("lms"), ctx.device)
    train_ex, val_ex = load_examples(data, "train", p["task"]), load_examples(data, "val", p["task"])
    train_pairs, val_pairs = tokenise(train_ex, tok_a, tok_b), tokenise(val_ex, tok_a, tok_b)
    torch.manual_seed(p["train_seed"])
    config = translator_config(p, lm_a, lm_b)
    translator = Translator(**config).to(ctx.device)
    bridge = make_bridge(lm_a, lm_b, translator, tok_a, tok_b)
    cfg = TrainConfig(**{k: p[k] for k in TRAIN_KEYS if k != "train_seed"}, seed=p["train_seed"])

    def val_fn(decoding) -> float:
        preds = answers(bridge, val_pairs, "bridged", decoding, tok_b, p["eval_batch_size"], 0)
        return score(preds, val_ex)["acc"]

    result = train_translator(bridge, train_pairs, val_fn, cfg)
    steps = zip(result.losses, result.times, strict=True)
    losses = [{"step": i + 1, "loss": v, "time_s": t} for i, (v, t) in enumerate(steps)]
    save_trained(ctx.out, translator, {"translator": config}, losses)
    (ctx.out / "val_history.json").write_text(json.dumps(result.history))
    return {
        "n_params": sum(x.numel() for x in translator.parameters() if x.requires_grad),
        "steps": p["steps"],
        "best_step": result.best_step,
        "stopped_step": result.stopped_step,
        "val_peak": result.peak,
        "val_last": result.last,
        "val_final": result.final,
        "val_degradation": result.degradation,
        "n_val": len(val_ex),
    }
