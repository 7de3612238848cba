"""bridge_data: both tasks' question sets, split train / val / test disjoint by content, and the two
LMs' tokenizers trained on the TRAIN split only.

``data_source``: ``generated`` (the offline default: arithmetic word problems and two-hop
questions, studies/bridge/data.py), ``files`` (local GSM8K jsonl ``gsm8k_file`` and HotpotQA json
``hotpotqa_file``; their bytes enter the fingerprint) or ``hub`` (the HF dataset hub, its two
splits pooled; an error naming the set where the hub is unreachable). Each task keeps
``n_per_task`` examples (a seeded sample of a file), split with
studies.bridge.data.split_disjoint (``n_val`` / ``n_test`` per task).

``lm_<side>_tokenizer``: ``char`` / ``word`` (studies/bridge/tokenizers.py, trained here) or
``gguf``: the tokenizer inside that side's GGUF model file (``lm_<side>_gguf``, see
stages/bridge/lms.py), exported with its special names (studies.bridge.pretrained.export_tokenizer).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.params import ParamsError
from pipeline.spec import Context, StageSpec

SOURCES = ("generated", "files", "hub")
FILE_KEYS = {"gsm8k_file": "arith", "hotpotqa_file": "twohop"}
TOKENIZERS = ("char", "word", "gguf")
GGUF = {"a": lambda lm_a_tokenizer: lm_a_tokenizer == "gguf", "b": lambda lm_b_tokenizer: lm_b_tokenizer == "gguf"}


def _files(p) -> list[Path]:
    """The dataset files and GGUF tokenizers' model files whose bytes define the data (hashed into the fingerprint)."""
    from stages.bridge.handover import gguf_files

    sides = "".join(side for side in "ab" if p[f"lm_{side}_tokenizer"] == "gguf")
    files = gguf_files(p, sides, f"lm_{sides[:1] or 'a'}_tokenizer")
    if p["data_source"] != "files":
        return files
    for key, what in (("gsm8k_file", "GSM8K jsonl (question, answer)"), ("hotpotqa_file", "HotpotQA json list")):
        path = Path(p[key])
        if not p[key] or not path.is_file():
            raise ParamsError(
                f"params.{key}", f"{p[key]!r} is not a file; with data_source: files it must name the {what}"
            )
        files.append(path)
    return files


SPEC = StageSpec(
    name="bridge_data",
    reads=(
        "data_source",
        "gsm8k_file",
        "hotpotqa_file",
        "n_per_task",
        "n_val",
        "n_test",
        "data_seed",
        "lm_a_tokenizer",
        "lm_b_tokenizer",
        "lm_a_gguf",
        "lm_b_gguf",
    ),
    code=("studies.bridge.data", "studies.bridge.tokenizers", "studies.bridge.pretrained", "stages.bridge.handover"),
    choices={"data_source": SOURCES, "lm_a_tokenizer": TOKENIZERS, "lm_b_tokenizer": TOKENIZERS},
    types=dict.fromkeys(("n_per_task", "n_val", "n_test", "data_seed"), int)
    | dict.fromkeys((*FILE_KEYS, "lm_a_gguf", "lm_b_gguf"), str),
    ranges={"n_per_task": ">= 3", "n_val": ">= 1", "n_test": ">= 2"},
    checks={"n_val + n_test < n_per_task": lambda n_val, n_test, n_per_task: n_val + n_test < n_per_task},
    external=_files,
    # a trained tokenizer reads no model file: its nodes' params (and fingerprints) leave the key out
    applies={f"lm_{side}_gguf": GGUF[side] for side in "ab"},
)


def load_task(p, task: str) -> list:
    """``n_per_task`` examples of ``task`` from the configured source."""
    import random

    from studies.bridge import data

    n, seed = p["n_per_task"], p["data_seed"]
    if p["data_source"] == "generated":
        return data.generate_arith(n, seed) if task == "arith" else data.generate_twohop(n, seed + 1)
    key = "gsm8k_file" if task == "arith" else "hotpotqa_file"
    load = data.load_gsm8k if task == "arith" else data.load_hotpotqa
    if p["data_source"] == "files":
        rows, where = load(p[key]), f"params.{key}={p[key]!r}"
    else:  # both hub splits pooled: split_disjoint makes this study's own content-disjoint splits
        name, splits = ("gsm8k", ("train", "test")) if task == "arith" else ("hotpotqa", ("train", "validation"))
        rows, where = [r for split in splits for r in load(name, split)], f"the hub's {name}"
    if len(rows) < n:
        raise ValueError(f"{where} holds {len(rows)} examples, fewer than params.n_per_task={n}")
    return random.Random(seed).sample(rows, n)


def run(ctx: Context) -> dict:
    from stages.bridge.handover import SPLITS, gguf_path, save_examples, save_gguf_tokenizer
    from studies.bridge.data import TASKS, lm_corpus, split_disjoint
    from studies.bridge.tokenizers import build_tokenizer

    p = ctx.params
    splits = {s: [] for s in SPLITS}
    for task in TASKS:
        for name, part in split_disjoint(load_task(p, task), p["n_val"], p["n_test"], p["data_seed"]).items():
            splits[name] += part
    train_questions = {e.question for e in splits["train"]}
    leaked = [e.question for s in ("val", "test") for e in splits[s] if e.question in train_questions]
    if leaked:  # split_disjoint guarantees this; checked again where the files are written
        raise ValueError(f"{len(leaked)} val/test questions are also in train, e.g. {leaked[0]!r}")
    save_examples(ctx.out, splits)
    corpus = lm_corpus(splits["train"])
    for side in ("a", "b"):
        if p[f"lm_{side}_tokenizer"] == "gguf":
            from studies.bridge.pretrained import export_tokenizer

            save_gguf_tokenizer(ctx.out, side, export_tokenizer(gguf_path(p, side)))
        else:
            build_tokenizer(p[f"lm_{side}_tokenizer"], corpus).save(str(ctx.out / f"tok_{side}.json"))
    return {f"n_{s}_{t}": sum(e.task == t for e in splits[s]) for s in SPLITS for t in TASKS}
