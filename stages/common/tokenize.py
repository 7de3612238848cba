"""tokenize: train the tokenizer on train documents only, and cache the token ids of every split once.

Every cell of a study that shares (corpus, tokenizer, vocab_size) reads this one cache.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(
    name="tokenize",
    reads=("tokenizer", "vocab_size"),
    needs=("download",),
    code=("studies.data.tokenizer",),
    choices={"tokenizer": ("bpe", "whitespace")},
    types={"vocab_size": int},
    checks={  # the floors studies.data.tokenizer.train_tokenizer enforces (tests/pipeline/test_validation.py)
        "vocab_size >= 257 for bpe (256 bytes + end-of-document), >= 3 for whitespace": lambda vocab_size, tokenizer: (
            vocab_size >= {"bpe": 257, "whitespace": 3}[tokenizer]
        )
    },
)


def run(ctx: Context) -> dict:
    import pyarrow.parquet as pq

    from studies.data import tokenizer as tk

    docs = {
        f.stem: pq.read_table(f).column("text").to_pylist() for f in sorted(ctx.input("download").glob("*.parquet"))
    }
    tok = tk.train_tokenizer(ctx.params["tokenizer"], docs["train"], ctx.params["vocab_size"])
    tk.save_tokenizer(tok, ctx.out / "tokenizer.json")
    counts = {}
    for split, texts in docs.items():
        ids = tk.encode_corpus(tok, texts)
        tk.save_tokens(ctx.out / f"{split}.tokens.pt", ids)
        counts[f"{split}_tokens"] = int(ids.numel())
    return {"vocab_size": tk.vocab_size(tok), **counts}
