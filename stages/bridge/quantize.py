"""quantize: what the wire really costs, post hoc on a trained translator (no training).

For each format of ``wire_formats`` (studies.bridge.wire.FORMATS: fp32, fp16, int8, int6, int4 in
groups of 32 with an fp32 scale per group, a 16-byte header and the anchor as UTF-8) every test
example's soft tokens are really encoded, each payload's length checked against
wire.expected_bytes, decoded, and B re-run on the DEQUANTIZED soft tokens with the evaluate
stage's decoding and batches, so fp32 reproduces evaluate's bridged accuracy exactly. Reported per
format: bytes mean/min/max, their ratio to the question's UTF-8 bytes (what the text baseline
sends: context and question) with a plain verdict (wire.wire_summary: an expansion is called one),
and accuracy after dequantization (``wire_<fmt>_acc``, the official scorer).
"""

from __future__ import annotations

import json

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="quantize",
    reads=("task", "stability", "max_new", "eval_batch_size", "wire_formats"),
    needs=("bridge_data", "lms", "train"),
    code=("studies.bridge.wire", "studies.bridge.bridged", "studies.bridge.lm", "stages.bridge.handover"),
    types={"wire_formats": str},
    checks={
        "wire_formats is a comma-separated list of fp32, fp16, int8, int6, int4": lambda wire_formats: (
            bool(formats(wire_formats)) and set(formats(wire_formats)) <= {"fp32", "fp16", "int8", "int6", "int4"}
        )
    },
    metrics=("wire_fp32_acc", "wire_int8_acc", "wire_int4_acc"),
    gpus=1,
)


def formats(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def dequantized_answers(bridge, pairs, tok_b, dec, batch_size: int, fmt: str) -> tuple[list[str], list[int]]:
    """B's decoded answers from each example's soft tokens after the ``fmt`` wire round trip, and
    each payload's length (checked against the formula)."""
    import torch

    from stages.bridge.handover import batches, decode
    from studies.bridge.lm import generate
    from studies.bridge.wire import expected_bytes, roundtrip

    anchor_bytes = len(bridge.anchor.encode("utf-8"))
    texts, sizes = [], []
    with torch.no_grad():
        for batch in batches(pairs, batch_size):
            soft = bridge.soft(batch)
            sent = [roundtrip(s, bridge.anchor, fmt) for s in soft]
            for _, n in sent:
                want = expected_bytes(soft.shape[1], soft.shape[2], fmt, anchor_bytes)
                if n != want:
                    raise AssertionError(f"{fmt} payload of {n} bytes, the formula says {want}")
                sizes.append(n)
            x = torch.cat([torch.stack([r for r, _ in sent]), bridge.anchor_embeds(len(batch))], 1)
            out = generate(
                bridge.lm_b,
                inputs_embeds=x,
                pad_mask=torch.ones(x.shape[:2], dtype=torch.bool, device=x.device),
                max_new=dec.max_new,
                eos_id=bridge.eos_b,
                repetition_penalty=dec.repetition_penalty,
                no_repeat_ngram=dec.no_repeat_ngram,
            )
            for row in out.tolist():
                texts.append(decode(tok_b, row[: row.index(bridge.eos_b)] if bridge.eos_b in row else row))
    return texts, sizes


def run(ctx: Context) -> dict:
    import torch

    from stages.bridge.evaluate import decoding
    from stages.bridge.handover import load_bridge, load_examples, question_text, score, tokenise
    from studies.bridge.wire import wire_summary

    torch.set_num_threads(ctx.threads)
    p = ctx.params
    bridge, tok_a, tok_b = load_bridge(ctx, ctx.device)
    test = load_examples(ctx.input("bridge_data"), "test", p["task"])
    pairs = tokenise(test, tok_a, tok_b)
    text_bytes = [len(question_text(e).encode("utf-8")) for e in test]
    rows, out = [], {"n_test": len(test), "n_soft_tokens": bridge.translator.queries.shape[0]}
    for fmt in formats(p["wire_formats"]):
        preds, sizes = dequantized_answers(bridge, pairs, tok_b, decoding(p), p["eval_batch_size"], fmt)
        summary = wire_summary(sizes, text_bytes)
        acc = score(preds, test)["acc"]
        rows.append({"format": fmt, **summary, "acc": acc})
        out |= {f"wire_{fmt}_{k}": summary[k] for k in ("bytes_mean", "bytes_min", "bytes_max", "wire_over_text")}
        out |= {f"wire_{fmt}_acc": acc, f"wire_{fmt}_verdict": summary["verdict"]}
    out["text_bytes_mean"] = rows[0]["text_bytes_mean"]
    (ctx.out / "wire.json").write_text(json.dumps(rows, indent=1))
    return out
