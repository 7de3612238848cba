"""banks: window sets and MinHash signatures over the token cache of every split, once per bank shape.

Cells that differ only in model or training params share one bank. The signatures depend
on the hash seed and k only, never on learned weights, so they are computed here once.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="banks",
    reads=("seq_len", "window", "stride", "minhash_k", "hash_seed"),
    needs=("tokenize",),
    code=("studies.ska.banks", "studies.data.lm", "studies.data.tokenizer"),
    types=dict.fromkeys(("seq_len", "window", "stride", "minhash_k", "hash_seed"), int),
    ranges={"seq_len": ">= 2", "window": ">= 1", "stride": ">= 1", "minhash_k": ">= 1"},
    checks={"window <= seq_len (a set is a window of one sequence)": lambda window, seq_len: window <= seq_len},
)


def run(ctx: Context) -> dict:
    from studies.data.lm import chunk_tokens
    from studies.data.tokenizer import load_tokenizer, load_tokens, vocab_size
    from studies.ska.banks import add_signatures, build_bank

    p, tok_dir = ctx.params, ctx.input("tokenize")
    vocab = vocab_size(load_tokenizer(tok_dir / "tokenizer.json"))
    metrics = {}
    for split in ("train", "val", "test"):
        inputs, _ = chunk_tokens(load_tokens(tok_dir / f"{split}.tokens.pt"), p["seq_len"])
        bank = add_signatures(build_bank(inputs, p["window"], p["stride"]), p["minhash_k"], p["hash_seed"], vocab)
        bank.save(ctx.out / f"{split}.bank.pt")
        metrics |= {
            f"{split}_seqs": bank.n_seqs,
            f"{split}_sets_per_seq": bank.n_sets / bank.n_seqs,
            f"{split}_avg_set_size": float(bank.sizes.float().mean()),
        }
    return metrics
