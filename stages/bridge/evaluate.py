"""evaluate: the trained bridge on the TEST split, beside its controls, every mode scored with the
official scorer (studies.bridge.scorers via handover.score).

Modes (studies.bridge.bridged): ``bridged`` (B reads [soft tokens ‖ anchor]: the result),
``text`` (B reads the question: the text baseline), ``no_bridge`` (B reads the anchor only: the
floor), ``shuffled`` (another example's soft tokens: the leak control) and ``a_alone`` (A answers
its own question). Metrics ``test_<mode>_acc`` (official GSM8K ``#### N`` accuracy for arith,
SQuAD EM for two-hop); arith also ``test_<mode>_acc_lenient_not_official`` (last number anywhere,
labelled, never the headline), two-hop ``test_<mode>_f1``; ``test_<mode>_invalid`` the share with
no valid answer; ``test_<mode>_distinct`` how many different answers it gave. Beside them the
floor ``majority_floor_acc``: always answering the TRAIN split's most frequent gold (a bridge that
passes on only the answer's type, country or city, gets no further than that floor per type, and
``distinct`` shows it). Decoding is the training's (hygiene with the stability switch). The
predictions are kept in ``predictions.jsonl``.
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec

MODES = ("bridged", "text", "no_bridge", "shuffled", "a_alone")
CONTROLS = ("no_bridge", "shuffled")  # what a bridged number must beat by a CI

SPEC = StageSpec(
    name="evaluate",
    reads=("task", "stability", "max_new", "a_max_new", "eval_batch_size"),
    needs=("bridge_data", "lms", "train"),
    code=("studies.bridge.bridged", "studies.bridge.scorers", "studies.bridge.train", "stages.bridge.handover"),
    types={"a_max_new": int},
    ranges={"a_max_new": ">= 1"},
    metrics=tuple(f"test_{m}_acc" for m in MODES),
    gpus=1,
)


def decoding(p):
    """The decoding the translator was selected with (studies.bridge.train.decoding_for)."""
    from studies.bridge.train import TrainConfig, decoding_for

    return decoding_for(TrainConfig(max_new=p["max_new"], stability=p["stability"]))


def mode_answers(bridge, pairs, tok_a, tok_b, dec, a_max_new: int, batch_size: int) -> dict[str, list[str]]:
    """Every mode's decoded answers on ``pairs``; a_alone in A's vocabulary with its own budget
    ``a_max_new`` (A's tokens are characters: an answer is several times longer in them), the rest in B's."""
    from dataclasses import replace

    from stages.bridge.handover import answers

    out = {m: answers(bridge, pairs, m, dec, tok_b, batch_size, 0) for m in MODES if m != "a_alone"}
    return out | {"a_alone": answers(bridge, pairs, "a_alone", replace(dec, max_new=a_max_new), tok_a, batch_size, 0)}


def run(ctx: Context) -> dict:
    from collections import Counter

    import torch

    from stages.bridge.handover import load_bridge, load_examples, score, tokenise

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    bridge, tok_a, tok_b = load_bridge(ctx, ctx.device)
    test = load_examples(ctx.input("bridge_data"), "test", p["task"])
    pairs = tokenise(test, tok_a, tok_b)
    preds = mode_answers(bridge, pairs, tok_a, tok_b, decoding(p), p["a_max_new"], p["eval_batch_size"])
    lines = [
        json.dumps({"question": e.question, "gold": e.gold} | {m: preds[m][i] for m in MODES})
        for i, e in enumerate(test)
    ]
    (ctx.out / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    out = {"n_test": len(test)}
    for m in MODES:
        out |= {f"test_{m}_{k}": v for k, v in score(preds[m], test).items()}
        out[f"test_{m}_distinct"] = len({t.strip() for t in preds[m]})
    train = load_examples(ctx.input("bridge_data"), "train", p["task"])
    (majority, _), *_ = Counter(e.answer for e in train).most_common(1)
    return out | {"majority_floor_acc": score([majority] * len(test), test)["acc"]}
